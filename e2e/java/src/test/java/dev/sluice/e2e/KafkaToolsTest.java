package dev.sluice.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;

/** Kafka's own command-line tools, each run from its main class as a process of its own. */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class KafkaToolsTest extends OneBroker {

  record Run(int exit, String out) {}

  /** Runs `main` with `args` (and `input` on stdin), up to two minutes. */
  static Run tool(String main, String input, String... args) throws Exception {
    List<String> cmd = new ArrayList<>(List.of(
        Path.of(System.getProperty("java.home"), "bin", "java").toString(),
        "-cp", System.getProperty("java.class.path"), main));
    cmd.addAll(List.of(args));
    Process p = new ProcessBuilder(cmd).redirectErrorStream(true).start();
    if (input != null) {
      p.getOutputStream().write(input.getBytes(StandardCharsets.UTF_8));
    }
    p.getOutputStream().close();
    byte[] out = p.getInputStream().readAllBytes();
    assertTrue(p.waitFor(120, TimeUnit.SECONDS), main + " did not finish");
    return new Run(p.exitValue(), new String(out, StandardCharsets.UTF_8));
  }

  static Run ok(String main, String input, String... args) throws Exception {
    Run r = tool(main, input, args);
    assertEquals(0, r.exit(), main + " " + String.join(" ", args) + ":\n" + r.out());
    return r;
  }

  static final String TOPICS = "org.apache.kafka.tools.TopicCommand";

  @Test
  @Order(1)
  void kafkaTopicsCreatesDescribesListsAndGrows() throws Exception {
    String b = broker.bootstrap();
    ok(TOPICS, null, "--bootstrap-server", b, "--create", "--topic", "tools", "--partitions", "3",
        "--replication-factor", "1", "--config", "retention.ms=3600000");
    Run d = ok(TOPICS, null, "--bootstrap-server", b, "--describe", "--topic", "tools");
    assertTrue(d.out().contains("PartitionCount: 3"), d.out());
    assertTrue(d.out().contains("retention.ms=3600000"), d.out());
    Run l = ok(TOPICS, null, "--bootstrap-server", b, "--list");
    assertTrue(l.out().lines().anyMatch("tools"::equals), l.out());
    ok(TOPICS, null, "--bootstrap-server", b, "--alter", "--topic", "tools", "--partitions", "4");
    Run after = ok(TOPICS, null, "--bootstrap-server", b, "--describe", "--topic", "tools");
    assertTrue(after.out().contains("PartitionCount: 4"), after.out());
    Run dup = tool(TOPICS, null, "--bootstrap-server", b, "--create", "--topic", "tools",
        "--partitions", "1", "--replication-factor", "1");
    assertTrue(dup.exit() != 0 && dup.out().contains("already exists"), dup.out());
  }

  @Test
  @Order(2)
  void consoleProducerThenConsoleConsumerInAGroup() throws Exception {
    String b = broker.bootstrap();
    StringBuilder lines = new StringBuilder();
    for (int i = 0; i < 100; i++) {
      lines.append("key").append(i % 4).append(':').append("line-").append(i).append('\n');
    }
    ok("org.apache.kafka.tools.ConsoleProducer", lines.toString(), "--bootstrap-server", b,
        "--topic", "tools", "--property", "parse.key=true", "--property", "key.separator=:");
    Run c = ok("org.apache.kafka.tools.consumer.ConsoleConsumer", null, "--bootstrap-server", b,
        "--topic", "tools", "--group", "console-group", "--from-beginning", "--max-messages", "100",
        "--timeout-ms", "30000");
    long read = c.out().lines().filter(l -> l.startsWith("line-")).count();
    assertEquals(100, read, c.out());
  }

  @Test
  @Order(3)
  void consumerGroupsDescribesAndResetsOffsets() throws Exception {
    String b = broker.bootstrap();
    String groups = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";
    Run list = ok(groups, null, "--bootstrap-server", b, "--list");
    assertTrue(list.out().contains("console-group"), list.out());
    Run d = ok(groups, null, "--bootstrap-server", b, "--describe", "--group", "console-group");
    assertTrue(d.out().contains("tools") && d.out().contains("LAG"), d.out());
    Run reset = ok(groups, null, "--bootstrap-server", b, "--reset-offsets", "--group", "console-group",
        "--topic", "tools", "--to-earliest", "--execute");
    assertTrue(reset.out().contains("NEW-OFFSET"), reset.out());
    Run again = ok(groups, null, "--bootstrap-server", b, "--describe", "--group", "console-group");
    // Every partition back at 0: the lag is the whole log again.
    long lagging = again.out().lines().filter(l -> l.contains("tools")).filter(l -> l.split("\\s+").length > 5)
        .filter(l -> l.split("\\s+")[3].equals("0")).count();
    assertEquals(4, lagging, again.out());
  }

  @Test
  @Order(4)
  void deleteRecordsLogDirsAndLeaderElection() throws Exception {
    String b = broker.bootstrap();
    Path json = Files.createTempFile("offsets", ".json");
    Files.writeString(json, "{\"partitions\":[{\"topic\":\"tools\",\"partition\":0,\"offset\":1}],\"version\":1}");
    Run del = ok("org.apache.kafka.tools.DeleteRecordsCommand", null, "--bootstrap-server", b,
        "--offset-json-file", json.toString());
    assertTrue(del.out().contains("low_watermark: 1"), del.out());
    Run dirs = ok("org.apache.kafka.tools.LogDirsCommand", null, "--bootstrap-server", b,
        "--describe", "--topic-list", "tools");
    assertTrue(dirs.out().contains("\"partition\":\"tools-0\""), dirs.out());
    Run elect = tool("org.apache.kafka.tools.LeaderElectionCommand", null, "--bootstrap-server", b,
        "--election-type", "preferred", "--all-topic-partitions");
    assertTrue(elect.out().contains("Valid replica already elected") || elect.exit() == 0, elect.out());
    Files.delete(json);
  }

  @Test
  @Order(5)
  void kafkaConfigsAltersDescribesAndDeletesTopicAndBrokerConfigs() throws Exception {
    String b = broker.bootstrap();
    String configs = "kafka.admin.ConfigCommand";
    Run add = ok(configs, null, "--bootstrap-server", b, "--entity-type", "topics", "--entity-name", "tools",
        "--alter", "--add-config", "retention.ms=7200000,segment.bytes=2000000,compression.type=lz4");
    assertTrue(add.out().contains("Completed updating config for topic tools"), add.out());
    Run d = ok(configs, null, "--bootstrap-server", b, "--entity-type", "topics", "--entity-name", "tools",
        "--describe");
    assertTrue(d.out().contains("retention.ms=7200000") && d.out().contains("segment.bytes=2000000")
        && d.out().contains("compression.type=lz4"), d.out());
    ok(configs, null, "--bootstrap-server", b, "--entity-type", "topics", "--entity-name", "tools",
        "--alter", "--delete-config", "segment.bytes,compression.type");
    Run after = ok(configs, null, "--bootstrap-server", b, "--entity-type", "topics", "--entity-name", "tools",
        "--describe");
    assertTrue(after.out().contains("retention.ms=7200000") && !after.out().contains("segment.bytes="),
        after.out());
    Run bad = tool(configs, null, "--bootstrap-server", b, "--entity-type", "topics", "--entity-name", "tools",
        "--alter", "--add-config", "no.such.config=1");
    assertTrue(bad.exit() != 0, bad.out());
    // A dynamic broker-wide default, shown with its source, then removed.
    ok(configs, null, "--bootstrap-server", b, "--entity-type", "brokers", "--entity-default",
        "--alter", "--add-config", "log.retention.ms=5400000");
    // Every config of the topic, each with its synonyms: its own
    // retention.ms over the broker-wide one just set, the defaults.
    Run topic = ok(configs, null, "--bootstrap-server", b, "--entity-type", "topics", "--entity-name", "tools",
        "--describe", "--all");
    assertTrue(topic.out().contains("retention.ms=7200000")
        && topic.out().contains("DYNAMIC_DEFAULT_BROKER_CONFIG:log.retention.ms=5400000")
        && topic.out().contains("segment.bytes=1073741824"), topic.out());
    // The cluster-wide defaults alone, as --entity-default --describe lists them.
    Run defaults = ok(configs, null, "--bootstrap-server", b, "--entity-type", "brokers", "--entity-default",
        "--describe");
    assertTrue(defaults.out().contains("log.retention.ms=5400000")
        && defaults.out().lines().filter(l -> l.contains("sensitive=")).count() == 1, defaults.out());
    ok(configs, null, "--bootstrap-server", b, "--entity-type", "brokers", "--entity-default",
        "--alter", "--delete-config", "log.retention.ms");
  }

  @Test
  @Order(6)
  void producerAndConsumerPerfTests() throws Exception {
    String b = broker.bootstrap();
    Run prod = ok("org.apache.kafka.tools.ProducerPerformance", null, "--topic", "perf", "--num-records",
        "20000", "--record-size", "100", "--throughput", "-1", "--producer-props", "bootstrap.servers=" + b);
    assertTrue(prod.out().contains("20000 records sent"), prod.out());
    Run cons = ok("org.apache.kafka.tools.ConsumerPerformance", null, "--bootstrap-server", b,
        "--topic", "perf", "--messages", "20000", "--timeout", "60000");
    assertTrue(cons.out().lines().anyMatch(l -> l.contains(", 20000,") || l.endsWith(", 20000")), cons.out());
  }
}
