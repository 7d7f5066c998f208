package dev.sluice.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertInstanceOf;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.GroupListing;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.MemberToRemove;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.RemoveMembersFromConsumerGroupOptions;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.KafkaFuture;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.InvalidPartitionsException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * The Java {@code Admin} client's calls that Sluice serves, one broker, each checked on what it
 * answers: topics, offsets and records, consumer groups and their offsets, the cluster and its
 * metadata quorum.
 */
class AdminTest extends OneBroker {
  static Admin admin;

  @BeforeAll
  static void connect() {
    Properties a = new Properties();
    a.put("bootstrap.servers", broker.bootstrap());
    admin = Admin.create(a);
  }

  @AfterAll
  static void disconnect() {
    admin.close();
  }

  static <T> T get(KafkaFuture<T> f) throws Exception {
    return f.get(30, TimeUnit.SECONDS);
  }

  /** The cause of the failure of `f`, which must fail. */
  static Throwable failure(KafkaFuture<?> f) {
    ExecutionException e = assertThrows(ExecutionException.class, () -> f.get(30, TimeUnit.SECONDS));
    return e.getCause();
  }

  static void waitFor(BooleanSupplier done, String what) throws InterruptedException {
    Instant deadline = Instant.now().plus(Duration.ofSeconds(30));
    while (!done.getAsBoolean()) {
      assertTrue(Instant.now().isBefore(deadline), "timed out: " + what);
      Thread.sleep(100);
    }
  }

  static Set<String> topicNames() {
    try {
      return get(admin.listTopics().names());
    } catch (Exception e) {
      throw new RuntimeException(e);
    }
  }

  @Test
  void topicsAreValidatedCreatedDescribedGrownAndDeleted() throws Exception {
    NewTopic spec = new NewTopic("admin-topic", 2, (short) 1).configs(Map.of("retention.ms", "3600000"));
    get(admin.createTopics(List.of(spec), new CreateTopicsOptions().validateOnly(true)).all());
    assertFalse(topicNames().contains("admin-topic"), "validate-only created the topic");

    CreateTopicsResult created = admin.createTopics(List.of(spec));
    get(created.all());
    assertEquals(2, get(created.numPartitions("admin-topic")));
    assertEquals(1, get(created.replicationFactor("admin-topic")));
    assertEquals("3600000", get(created.config("admin-topic")).get("retention.ms").value());
    assertInstanceOf(TopicExistsException.class, failure(admin.createTopics(List.of(spec)).all()));

    assertTrue(topicNames().contains("admin-topic"));
    TopicDescription d = get(admin.describeTopics(List.of("admin-topic")).allTopicNames()).get("admin-topic");
    assertEquals(get(created.topicId("admin-topic")), d.topicId());
    assertEquals(2, d.partitions().size());
    int me = get(admin.describeCluster().nodes()).iterator().next().id();
    assertEquals(me, d.partitions().get(0).leader().id(), d.toString());

    get(admin.createPartitions(Map.of("admin-topic", NewPartitions.increaseTo(4))).all());
    waitFor(() -> {
      try {
        return get(admin.describeTopics(List.of("admin-topic")).allTopicNames())
            .get("admin-topic").partitions().size() == 4;
      } catch (Exception e) {
        return false;
      }
    }, "four partitions");
    assertInstanceOf(InvalidPartitionsException.class,
        failure(admin.createPartitions(Map.of("admin-topic", NewPartitions.increaseTo(3))).all()));

    get(admin.deleteTopics(List.of("admin-topic")).all());
    waitFor(() -> !topicNames().contains("admin-topic"), "admin-topic gone from the listing");
    assertInstanceOf(UnknownTopicOrPartitionException.class,
        failure(admin.deleteTopics(List.of("admin-topic")).all()));
  }

  @Test
  void offsetsByTimeRecordsDeletedAndLogDirs() throws Exception {
    String topic = "admin-offsets";
    get(admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all());
    long base = System.currentTimeMillis() - 60_000;
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
      for (int i = 0; i < 10; i++) {
        // Record i at base + i seconds.
        producer.send(new ProducerRecord<>(topic, 0, base + 1000L * i, "k" + i, "v" + i)).get();
      }
    }
    TopicPartition tp = new TopicPartition(topic, 0);
    assertEquals(0, offset(tp, OffsetSpec.earliest()).offset());
    assertEquals(10, offset(tp, OffsetSpec.latest()).offset());
    ListOffsetsResultInfo max = offset(tp, OffsetSpec.maxTimestamp());
    assertEquals(9, max.offset());
    assertEquals(base + 9000, max.timestamp());
    // The first record at or after base + 3.5 s is record 4.
    ListOffsetsResultInfo at = offset(tp, OffsetSpec.forTimestamp(base + 3500));
    assertEquals(4, at.offset());
    assertEquals(base + 4000, at.timestamp());

    long low = get(admin.deleteRecords(Map.of(tp, RecordsToDelete.beforeOffset(5))).lowWatermarks().get(tp))
        .lowWatermark();
    assertEquals(5, low);
    assertEquals(5, offset(tp, OffsetSpec.earliest()).offset());

    int me = get(admin.describeCluster().nodes()).iterator().next().id();
    Map<String, LogDirDescription> dirs = get(admin.describeLogDirs(List.of(me)).allDescriptions()).get(me);
    assertEquals(1, dirs.size(), dirs.toString());
    LogDirDescription dir = dirs.values().iterator().next();
    assertTrue(dir.replicaInfos().containsKey(tp), dir.toString());
    assertTrue(dir.replicaInfos().get(tp).size() > 0, dir.toString());
    assertTrue(dir.totalBytes().orElse(0) > 0 && dir.usableBytes().orElse(-1) >= 0, dir.toString());
  }

  static ListOffsetsResultInfo offset(TopicPartition tp, OffsetSpec spec) throws Exception {
    return get(admin.listOffsets(Map.of(tp, spec)).partitionResult(tp));
  }

  @Test
  void consumerGroupOffsetsAndMembersAdministered() throws Exception {
    String topic = "admin-groups";
    String group = "admin-group";
    get(admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all());
    TopicPartition p0 = new TopicPartition(topic, 0);
    TopicPartition p1 = new TopicPartition(topic, 1);

    // Offsets committed for a group nobody runs: an empty group.
    get(admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(3), p1, new OffsetAndMetadata(1)))
        .all());
    assertEquals(Map.of(p0, new OffsetAndMetadata(3), p1, new OffsetAndMetadata(1)), committed(group));
    ConsumerGroupDescription empty = get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
    assertEquals(GroupState.EMPTY, empty.groupState(), empty.toString());
    GroupListing listed = get(admin.listGroups().all()).stream()
        .filter(g -> g.groupId().equals(group)).findFirst().orElseThrow();
    assertEquals(GroupState.EMPTY, listed.groupState().orElseThrow(), listed.toString());

    get(admin.deleteConsumerGroupOffsets(group, Set.of(p1)).all());
    assertEquals(Map.of(p0, new OffsetAndMetadata(3)), committed(group));

    // A static member, then removed by the admin client while it is idle.
    Properties c = new Properties();
    c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
    c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    c.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "admin-member");
    c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
    c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
      consumer.subscribe(List.of(topic));
      Instant deadline = Instant.now().plus(Duration.ofSeconds(30));
      while (consumer.assignment().size() < 2) {
        assertTrue(Instant.now().isBefore(deadline), "the member was never assigned both partitions");
        consumer.poll(Duration.ofMillis(100));
      }
      ConsumerGroupDescription stable = get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
      assertEquals(GroupState.STABLE, stable.groupState(), stable.toString());
      assertEquals(1, stable.members().size(), stable.toString());
      assertEquals("admin-member", stable.members().iterator().next().groupInstanceId().orElse(""));

      get(admin.removeMembersFromConsumerGroup(group, new RemoveMembersFromConsumerGroupOptions(
          List.of(new MemberToRemove("admin-member")))).all());
      ConsumerGroupDescription after = get(admin.describeConsumerGroups(List.of(group)).all()).get(group);
      assertTrue(after.members().isEmpty(), after.toString());
    }

    get(admin.deleteConsumerGroups(List.of(group)).all());
    assertFalse(get(admin.listGroups().all()).stream().anyMatch(g -> g.groupId().equals(group)));
    assertInstanceOf(GroupIdNotFoundException.class, failure(admin.deleteConsumerGroups(List.of(group)).all()));
  }

  static Map<TopicPartition, OffsetAndMetadata> committed(String group) throws Exception {
    return get(admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata());
  }

  @Test
  void theClusterAndItsMetadataQuorum() throws Exception {
    DescribeClusterResult cluster = admin.describeCluster();
    String id = get(cluster.clusterId());
    assertNotNull(id);
    assertFalse(id.isEmpty());
    assertEquals(1, get(cluster.nodes()).size());
    int me = get(cluster.nodes()).iterator().next().id();
    assertEquals(me, get(cluster.controller()).id());

    QuorumInfo quorum = get(admin.describeMetadataQuorum().quorumInfo());
    assertEquals(me, quorum.leaderId(), quorum.toString());
    assertEquals(List.of(me), quorum.voters().stream().map(QuorumInfo.ReplicaState::replicaId).toList(),
        quorum.toString());
    assertTrue(quorum.highWatermark() > 0, quorum.toString());
  }
}
