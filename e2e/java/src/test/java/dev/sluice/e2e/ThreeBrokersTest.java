package dev.sluice.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;
import java.util.function.Predicate;
import java.util.stream.Collectors;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/**
 * Kafka's Java clients and tools against a cluster of three brokers: a leader killed mid-produce,
 * preferred leader election after its return, kafka-reassign-partitions with a throttle, and
 * dynamic broker configs set for one broker and for all.
 */
class ThreeBrokersTest {
  static List<SluiceBroker> brokers;
  static Admin admin;

  @BeforeAll
  static void startCluster() throws Exception {
    brokers = SluiceBroker.cluster(3);
    Properties a = new Properties();
    a.put("bootstrap.servers", bootstrap());
    admin = Admin.create(a);
  }

  /** Each test starts on three live brokers: one a test restarted may still be registering. */
  @BeforeEach
  void threeBrokersInTheMetadata() throws Exception {
    waitFor(() -> {
      try {
        return admin.describeCluster().nodes().get(5, TimeUnit.SECONDS).size() == 3;
      } catch (Exception notYet) {
        return false;
      }
    }, Duration.ofSeconds(60), "three brokers in the cluster's metadata");
  }

  @AfterAll
  static void stopCluster() throws Exception {
    if (admin != null) {
      admin.close();
    }
    for (SluiceBroker b : brokers) {
      String log = b.log();
      b.close();
      assertTrue(!log.contains("panicked"), log);
    }
  }

  static String bootstrap() {
    return brokers.stream().map(SluiceBroker::bootstrap).collect(Collectors.joining(","));
  }

  static void waitFor(BooleanSupplier done, Duration within, String what) throws Exception {
    Instant deadline = Instant.now().plus(within);
    while (!done.getAsBoolean()) {
      if (Instant.now().isAfter(deadline)) {
        throw new AssertionError("not within " + within + ": " + what);
      }
      Thread.sleep(200);
    }
  }

  static TopicDescription describe(String topic) throws Exception {
    return admin.describeTopics(List.of(topic)).allTopicNames().get(15, TimeUnit.SECONDS).get(topic);
  }

  /** Every record of the topic, partition -> offset -> value, read from the start. */
  static Map<Integer, Map<Long, String>> readAll(String topic, int partitions, long expected) {
    Properties c = new Properties();
    c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    Map<Integer, Map<Long, String>> read = new HashMap<>();
    try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
      List<TopicPartition> tps = new ArrayList<>();
      for (int p = 0; p < partitions; p++) {
        tps.add(new TopicPartition(topic, p));
      }
      consumer.assign(tps);
      consumer.seekToBeginning(tps);
      Map<TopicPartition, Long> end = consumer.endOffsets(tps, Duration.ofSeconds(30));
      assertEquals(expected, end.values().stream().mapToLong(Long::longValue).sum(),
          "high watermarks " + end);
      Instant deadline = Instant.now().plus(Duration.ofSeconds(120));
      long got = 0;
      while (got < expected && Instant.now().isBefore(deadline)) {
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
          read.computeIfAbsent(r.partition(), k -> new HashMap<>()).put(r.offset(), r.value());
          got++;
        }
      }
    }
    return read;
  }

  /**
   * The producer's defaults (idempotent, acks=all) on a topic of RF 3 and min.insync.replicas 2;
   * the leader of partition 0 is killed (SIGKILL) mid-produce and started again later. Every
   * acknowledged record is read back at its offset, no record is written twice, and once the
   * killed broker is back kafka-leader-election moves each partition's leadership back to its
   * preferred replica.
   */
  @Test
  void aLeaderKilledMidProduceLosesNoAcknowledgedRecord() throws Exception {
    String topic = "durable";
    int partitions = 3;
    admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 3)
        .configs(Map.of("min.insync.replicas", "2")))).all().get(30, TimeUnit.SECONDS);
    int leader = describe(topic).partitions().get(0).leader().id();

    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
    int total = 6000;
    Map<String, String> acked = new ConcurrentHashMap<>();
    AtomicReference<Exception> failed = new AtomicReference<>();
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
      for (int i = 0; i < total; i++) {
        String value = String.format("record-%05d", i);
        producer.send(new ProducerRecord<>(topic, Integer.toString(i), value), (md, e) -> {
          if (e != null) {
            failed.compareAndSet(null, e);
          } else {
            acked.put(md.partition() + "@" + md.offset(), value);
          }
        });
        if (i == total / 3) {
          producer.flush();
          brokers.get(leader).kill();
        }
        if (i == 2 * total / 3) {
          brokers.get(leader).restart();
        }
        if (i % 100 == 0) {
          Thread.sleep(10);
        }
      }
      producer.flush();
    }
    assertEquals(null, failed.get(), "a send failed");
    assertEquals(total, acked.size(), "acknowledged records");

    Map<Integer, Map<Long, String>> read = readAll(topic, partitions, total);
    Set<String> values = new java.util.HashSet<>();
    for (Map.Entry<String, String> a : acked.entrySet()) {
      String[] at = a.getKey().split("@");
      String got = read.getOrDefault(Integer.parseInt(at[0]), Map.of()).get(Long.parseLong(at[1]));
      assertEquals(a.getValue(), got, "record acknowledged at " + a.getKey());
      assertTrue(values.add(got), "written twice: " + got);
    }

    // The killed broker is back in every partition's ISR, then preferred election.
    waitFor(() -> {
      try {
        return describe(topic).partitions().stream().allMatch(tp -> tp.isr().size() == 3);
      } catch (Exception notYet) {
        return false;
      }
    }, Duration.ofSeconds(60), "the restarted broker back in every ISR");
    KafkaToolsTest.Run elect = KafkaToolsTest.tool("org.apache.kafka.tools.LeaderElectionCommand",
        null, "--bootstrap-server", bootstrap(), "--election-type", "preferred", "--topic", topic,
        "--partition", "0");
    assertEquals(0, elect.exit(), elect.out());
    assertTrue(elect.out().contains("Successfully completed leader election (PREFERRED) for partitions "
        + topic + "-0"), elect.out());
    TopicPartitionInfo first = describe(topic).partitions().get(0);
    assertEquals(first.replicas().get(0).id(), first.leader().id(), first.toString());
  }

  /**
   * kafka-reassign-partitions moves a partition of RF 1 from broker 0 to brokers 1 and 2 under a
   * throttle: --execute sets the throttle, --verify reports the move and clears it, and every
   * record is read back from the new replicas.
   */
  @Test
  void reassignPartitionsWithAThrottleThenVerify() throws Exception {
    String topic = "moving";
    admin.createTopics(List.of(new NewTopic(topic, Map.of(0, List.of(0)))))
        .all().get(30, TimeUnit.SECONDS);
    int records = 2000;
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap());
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
      for (int i = 0; i < records; i++) {
        producer.send(new ProducerRecord<>(topic, String.format("moved-%05d", i) + ".".repeat(500)));
      }
      producer.flush();
    }

    Path plan = Files.createTempFile("reassign", ".json");
    Files.writeString(plan, "{\"version\":1,\"partitions\":[{\"topic\":\"" + topic
        + "\",\"partition\":0,\"replicas\":[1,2]}]}");
    String reassign = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand";
    KafkaToolsTest.Run exec = KafkaToolsTest.ok(reassign, null, "--bootstrap-server", bootstrap(),
        "--reassignment-json-file", plan.toString(), "--execute", "--throttle", "500000");
    assertTrue(exec.out().contains("Successfully started partition reassignment"), exec.out());
    assertTrue(exec.out().contains("The inter-broker throttle limit was set to 500000 B/s"),
        exec.out());
    Config broker1 = admin.describeConfigs(List.of(new ConfigResource(ConfigResource.Type.BROKER, "1")))
        .all().get(15, TimeUnit.SECONDS).values().iterator().next();
    assertEquals("500000", broker1.get("follower.replication.throttled.rate").value());
    // The tool names the replicas the throttle applies to: the leader side
    // on the current replica, the follower side on the ones moving in.
    Config moving = admin.describeConfigs(List.of(new ConfigResource(ConfigResource.Type.TOPIC, topic)))
        .all().get(15, TimeUnit.SECONDS).values().iterator().next();
    assertEquals("0:0", moving.get("leader.replication.throttled.replicas").value());
    assertEquals(Set.of("0:1", "0:2"),
        Set.of(moving.get("follower.replication.throttled.replicas").value().split(",")));

    AtomicReference<String> last = new AtomicReference<>("");
    waitFor(() -> {
      try {
        KafkaToolsTest.Run v = KafkaToolsTest.ok(reassign, null, "--bootstrap-server", bootstrap(),
            "--reassignment-json-file", plan.toString(), "--verify");
        last.set(v.out());
        return v.out().contains("Reassignment of partition " + topic + "-0 is completed");
      } catch (Exception e) {
        last.set(e.toString());
        return false;
      }
    }, Duration.ofSeconds(120), "reassignment completed");
    assertTrue(last.get().contains("Clearing broker-level throttles"), last.get());
    assertTrue(last.get().contains("Clearing topic-level throttles"), last.get());
    Files.delete(plan);

    TopicPartitionInfo moved = describe(topic).partitions().get(0);
    assertEquals(List.of(1, 2), moved.replicas().stream().map(Node::id).toList(), moved.toString());
    Config after = admin.describeConfigs(List.of(new ConfigResource(ConfigResource.Type.BROKER, "1")))
        .all().get(15, TimeUnit.SECONDS).values().iterator().next();
    // As Kafka: the rate is back to its default, Long.MAX_VALUE (none).
    ConfigEntry rate = after.get("follower.replication.throttled.rate");
    assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, rate.source(), "throttle left: " + rate);
    assertEquals(String.valueOf(Long.MAX_VALUE), rate.value());
    Config topicConfig = admin.describeConfigs(List.of(new ConfigResource(ConfigResource.Type.TOPIC, topic)))
        .all().get(15, TimeUnit.SECONDS).values().iterator().next();
    assertEquals("", topicConfig.get("follower.replication.throttled.replicas").value(),
        "topic throttle left after --verify");

    brokers.get(0).kill();
    try {
      Map<Integer, Map<Long, String>> read = readAll(topic, 1, records);
      for (long o = 0; o < records; o++) {
        String v = read.getOrDefault(0, Map.of()).get(o);
        assertTrue(v != null && v.startsWith(String.format("moved-%05d", o)), "offset " + o + ": " + v);
      }
    } finally {
      brokers.get(0).restart();
    }
  }

  /**
   * A dynamic broker config set for every broker (the resource kafka-configs --entity-default
   * names) through whichever broker the Admin client picks is in effect on all three, with its
   * source; one broker's own value is over it on that broker only.
   */
  @Test
  void aClusterWideDynamicDefaultReachesEveryBroker() throws Exception {
    String name = "log.segment.bytes";
    alterBroker("", new AlterConfigOp(new ConfigEntry(name, "2097152"), AlterConfigOp.OpType.SET));
    alterBroker("2", new AlterConfigOp(new ConfigEntry(name, "3145728"), AlterConfigOp.OpType.SET));
    try {
      for (int id = 0; id < 3; id++) {
        String expected = id == 2 ? "3145728" : "2097152";
        ConfigEntry e = settledConfig(id, name, c -> expected.equals(c.value()));
        if (id == 2) {
          assertEquals("3145728", e.value(), e.toString());
          assertEquals(ConfigEntry.ConfigSource.DYNAMIC_BROKER_CONFIG, e.source(), e.toString());
          // Its synonyms: its own value over the cluster-wide one over the default.
          assertEquals(List.of(ConfigEntry.ConfigSource.DYNAMIC_BROKER_CONFIG,
              ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, ConfigEntry.ConfigSource.DEFAULT_CONFIG),
              e.synonyms().stream().map(ConfigEntry.ConfigSynonym::source).toList(), e.toString());
        } else {
          assertEquals("2097152", e.value(), "broker " + id + ": " + e);
          assertEquals(ConfigEntry.ConfigSource.DYNAMIC_DEFAULT_BROKER_CONFIG, e.source(), e.toString());
        }
      }
      // The cluster-wide resource lists its own settings only.
      Config defaults = admin.describeConfigs(List.of(new ConfigResource(ConfigResource.Type.BROKER, "")))
          .all().get(15, TimeUnit.SECONDS).values().iterator().next();
      assertEquals(Set.of(name), defaults.entries().stream().map(ConfigEntry::name).collect(Collectors.toSet()),
          defaults.toString());
    } finally {
      alterBroker("2", new AlterConfigOp(new ConfigEntry(name, ""), AlterConfigOp.OpType.DELETE));
      alterBroker("", new AlterConfigOp(new ConfigEntry(name, ""), AlterConfigOp.OpType.DELETE));
    }
    for (int id = 0; id < 3; id++) {
      ConfigEntry e = settledConfig(id, name, c -> c.source() == ConfigEntry.ConfigSource.DEFAULT_CONFIG);
      assertEquals(ConfigEntry.ConfigSource.DEFAULT_CONFIG, e.source(), "broker " + id + ": " + e);
      assertEquals("1073741824", e.value(), e.toString());
    }
  }

  /**
   * Broker {@code id}'s entry for {@code name}, asked again every 200 ms for up to 10 s until
   * {@code until} holds: a broker applies a change once the metadata log reaches it, as Kafka's
   * brokers do, and a client that asks another broker may see the old value first.
   */
  private static ConfigEntry settledConfig(int id, String name, Predicate<ConfigEntry> until)
      throws Exception {
    ConfigEntry e = brokerConfig(id).get(name);
    for (int i = 0; i < 50 && !until.test(e); i++) {
      Thread.sleep(200);
      e = brokerConfig(id).get(name);
    }
    return e;
  }

  private static void alterBroker(String resource, AlterConfigOp op) throws Exception {
    admin.incrementalAlterConfigs(Map.of(new ConfigResource(ConfigResource.Type.BROKER, resource), List.of(op)))
        .all().get(30, TimeUnit.SECONDS);
  }

  private static Config brokerConfig(int id) throws Exception {
    ConfigResource r = new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(id));
    return admin.describeConfigs(List.of(r), new org.apache.kafka.clients.admin.DescribeConfigsOptions()
        .includeSynonyms(true)).all().get(15, TimeUnit.SECONDS).get(r);
  }
}
