// The metadata quorum's voters through Kafka's own Java Admin client
// (KIP-853: describeMetadataQuorum, addRaftVoter, removeRaftVoter), for the
// e2e tests. Run in source-file mode with Kafka's classpath:
//
//   java -cp "$(cat .tools/kafka/classpath.txt)" e2e/java/RaftVoters.java BOOTSTRAP
//
// then one command per line on stdin, one answer line each on stdout:
//
//   describe                      -> leader=L epoch=E hw=H voters=ID/DIR/END,...
//                                    observers=ID/DIR/END,...
//   add ID DIRECTORY_ID HOST:PORT -> ok | error ExceptionClass: message
//   remove ID DIRECTORY_ID        -> ok | error ExceptionClass: message
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.clients.admin.RaftVoterEndpoint;
import org.apache.kafka.common.Uuid;

public class RaftVoters {
  private static String replicas(List<QuorumInfo.ReplicaState> rs) {
    return rs.stream()
        .map(r -> r.replicaId() + "/" + r.replicaDirectoryId() + "/" + r.logEndOffset())
        .collect(Collectors.joining(","));
  }

  private static String run(Admin admin, String[] words) throws Exception {
    switch (words[0]) {
      case "describe": {
        QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get(30, TimeUnit.SECONDS);
        return "leader=" + q.leaderId() + " epoch=" + q.leaderEpoch() + " hw=" + q.highWatermark()
            + " voters=" + replicas(q.voters()) + " observers=" + replicas(q.observers());
      }
      case "add": {
        int colon = words[3].lastIndexOf(':');
        RaftVoterEndpoint endpoint = new RaftVoterEndpoint(
            "CONTROLLER", words[3].substring(0, colon),
            Integer.parseInt(words[3].substring(colon + 1)));
        admin.addRaftVoter(Integer.parseInt(words[1]), Uuid.fromString(words[2]), Set.of(endpoint))
            .all().get(60, TimeUnit.SECONDS);
        return "ok";
      }
      case "remove": {
        admin.removeRaftVoter(Integer.parseInt(words[1]), Uuid.fromString(words[2]))
            .all().get(60, TimeUnit.SECONDS);
        return "ok";
      }
      default:
        return "error IllegalArgumentException: unknown command " + words[0];
    }
  }

  public static void main(String[] args) throws Exception {
    Properties props = new Properties();
    props.put("bootstrap.servers", args[0]);
    try (Admin admin = Admin.create(props);
        BufferedReader in = new BufferedReader(
            new InputStreamReader(System.in, StandardCharsets.UTF_8))) {
      System.out.println("ready");
      System.out.flush();
      String line;
      while ((line = in.readLine()) != null) {
        String[] words = line.trim().split("\\s+");
        String answer;
        try {
          answer = run(admin, words);
        } catch (ExecutionException e) {
          Throwable c = e.getCause() == null ? e : e.getCause();
          answer = "error " + c.getClass().getSimpleName() + ": " + c.getMessage();
        } catch (Exception e) {
          answer = "error " + e.getClass().getSimpleName() + ": " + e.getMessage();
        }
        System.out.println(answer.replace('\n', ' '));
        System.out.flush();
      }
    }
  }
}
