package dev.sluice.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;
import org.apache.kafka.clients.admin.UserScramCredentialsDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.errors.SaslAuthenticationException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The Java client over SASL_SSL with SCRAM-SHA-512: credentials set with the Admin client on the
 * PLAINTEXT listener, then admin, produce and a group consume on the SASL_SSL listener with a PEM
 * trust store (certificates made with the openssl command); a wrong password is refused.
 */
class SecurityTest {
  static SluiceBroker broker;
  static Path certs;
  static String plain;
  static String secure;

  static void run(Path dir, String... command) throws Exception {
    Process p = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true).start();
    String out = new String(p.getInputStream().readAllBytes());
    assertEquals(0, p.waitFor(), String.join(" ", command) + ": " + out);
  }

  @BeforeAll
  static void start() throws Exception {
    certs = Files.createTempDirectory("sluice-java-certs-");
    String ec = "ec_paramgen_curve:P-256";
    run(certs, "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", ec, "-nodes",
        "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Sluice Java test CA");
    run(certs, "openssl", "req", "-newkey", "ec", "-pkeyopt", ec, "-nodes",
        "-keyout", "broker.key", "-out", "broker.csr", "-subj", "/CN=localhost");
    Files.writeString(certs.resolve("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n");
    run(certs, "openssl", "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-out", "broker.crt", "-days", "2", "-extfile", "san.ext");
    Files.writeString(certs.resolve("keystore.pem"),
        Files.readString(certs.resolve("broker.key")) + Files.readString(certs.resolve("broker.crt")));
    int p = SluiceBroker.freePort();
    int s = SluiceBroker.freePort();
    plain = "127.0.0.1:" + p;
    secure = "127.0.0.1:" + s;
    broker = SluiceBroker.startListening(p,
        "--listeners", "PLAINTEXT://" + plain + ",SASL_SSL://" + secure,
        "--ssl-keystore-location", certs.resolve("keystore.pem").toString());
    try (Admin admin = Admin.create(Map.of("bootstrap.servers", plain))) {
      admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion("java-user",
              new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192), "java-secret")))
          .all().get(30, TimeUnit.SECONDS);
      UserScramCredentialsDescription d = admin.describeUserScramCredentials(List.of("java-user"))
          .description("java-user").get(30, TimeUnit.SECONDS);
      assertEquals(List.of(new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 8192)),
          d.credentialInfos());
    }
  }

  @AfterAll
  static void stop() throws Exception {
    broker.close();
  }

  static Properties sasl(String password) {
    Properties p = new Properties();
    p.put("bootstrap.servers", secure);
    p.put("security.protocol", "SASL_SSL");
    p.put("ssl.truststore.type", "PEM");
    p.put("ssl.truststore.location", certs.resolve("ca.pem").toString());
    p.put("sasl.mechanism", "SCRAM-SHA-512");
    p.put("sasl.jaas.config", "org.apache.kafka.common.security.scram.ScramLoginModule required"
        + " username=\"java-user\" password=\"" + password + "\";");
    return p;
  }

  @Test
  void adminProduceAndGroupConsumeOverSaslSsl() throws Exception {
    String topic = "java-sasl-ssl";
    try (Admin admin = Admin.create(sasl("java-secret"))) {
      admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get(30, TimeUnit.SECONDS);
      assertTrue(admin.listTopics().names().get(30, TimeUnit.SECONDS).contains(topic));
      int port = Integer.parseInt(secure.split(":")[1]);
      assertTrue(admin.describeCluster().nodes().get(30, TimeUnit.SECONDS).stream()
          .allMatch(n -> n.port() == port), "the SASL_SSL listener names its own port");
    }
    Properties pp = sasl("java-secret");
    pp.put(ProducerConfig.ACKS_CONFIG, "all");
    try (KafkaProducer<String, String> producer =
        new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
      for (int i = 0; i < 50; i++) {
        producer.send(new ProducerRecord<>(topic, "k" + i, "v" + i)).get(30, TimeUnit.SECONDS);
      }
    }
    Properties cp = sasl("java-secret");
    cp.put(ConsumerConfig.GROUP_ID_CONFIG, "java-sasl-group");
    cp.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    List<String> got = new ArrayList<>();
    try (KafkaConsumer<String, String> consumer =
        new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer())) {
      consumer.subscribe(List.of(topic));
      long deadline = System.currentTimeMillis() + 30_000;
      while (got.size() < 50 && System.currentTimeMillis() < deadline) {
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(200))) {
          got.add(r.value());
        }
      }
      consumer.commitSync();
    }
    assertEquals(50, Set.copyOf(got).size());
  }

  @Test
  void aWrongPasswordIsRefusedAndWritesNothing() throws Exception {
    String topic = "java-sasl-refused";
    try (Admin admin = Admin.create(Map.of("bootstrap.servers", plain))) {
      admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(30, TimeUnit.SECONDS);
    }
    Properties pp = sasl("not-the-password");
    pp.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "10000");
    try (KafkaProducer<String, String> producer =
        new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
      ExecutionException e = assertThrows(ExecutionException.class,
          () -> producer.send(new ProducerRecord<>(topic, "never")).get(30, TimeUnit.SECONDS));
      assertInstanceOf(SaslAuthenticationException.class, e.getCause());
      assertTrue(e.getCause().getMessage().contains("invalid credentials"), e.getCause().getMessage());
    }
    try (Admin admin = Admin.create(Map.of("bootstrap.servers", plain))) {
      var tp = new org.apache.kafka.common.TopicPartition(topic, 0);
      long end = admin.listOffsets(Map.of(tp, org.apache.kafka.clients.admin.OffsetSpec.latest()))
          .partitionResult(tp).get(30, TimeUnit.SECONDS).offset();
      assertEquals(0, end, "nothing written");
    }
    assertFalse(broker.log().contains("not-the-password"), "no password in the log");
  }
}
