package dev.sluice.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Consumer groups of the classic protocol, as the Java client runs them. */
class ConsumerGroupTest extends OneBroker {

  @BeforeAll
  static void createTopics() throws Exception {
    Properties a = new Properties();
    a.put("bootstrap.servers", broker.bootstrap());
    try (Admin admin = Admin.create(a)) {
      admin.createTopics(List.of(
          new NewTopic("coop", 6, (short) 1), new NewTopic("static", 4, (short) 1))).all().get();
    }
  }

  static Properties props(String group) {
    Properties c = new Properties();
    c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
    c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    return c;
  }

  /** Polls both consumers until `done` holds, for at most 60 s. */
  static void pollUntil(List<KafkaConsumer<String, String>> cs, BooleanSupplier done, String what) {
    Instant deadline = Instant.now().plus(Duration.ofSeconds(60));
    while (!done.getAsBoolean()) {
      assertTrue(Instant.now().isBefore(deadline), "timed out: " + what);
      for (KafkaConsumer<String, String> c : cs) {
        c.poll(Duration.ofMillis(100));
      }
    }
  }

  /** Cooperative-sticky: a second member takes half the partitions, and the first never gives up what it keeps. */
  @Test
  void cooperativeStickyHandsOverOnlyWhatMoves() {
    Properties p = props("coop-group");
    p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, CooperativeStickyAssignor.class.getName());
    AtomicInteger revokedFromFirst = new AtomicInteger();
    Set<TopicPartition> keptByFirst = new HashSet<>();
    try (KafkaConsumer<String, String> a = new KafkaConsumer<>(p);
        KafkaConsumer<String, String> b = new KafkaConsumer<>(p)) {
      a.subscribe(List.of("coop"), new ConsumerRebalanceListener() {
        @Override
        public void onPartitionsRevoked(Collection<TopicPartition> parts) {
          revokedFromFirst.addAndGet(parts.size());
        }

        @Override
        public void onPartitionsAssigned(Collection<TopicPartition> parts) {}
      });
      pollUntil(List.of(a), () -> a.assignment().size() == 6, "the first member owns all six");
      keptByFirst.addAll(a.assignment());
      b.subscribe(List.of("coop"));
      pollUntil(List.of(a, b),
          () -> a.assignment().size() == 3 && b.assignment().size() == 3,
          "three partitions each");
      Set<TopicPartition> all = new HashSet<>(a.assignment());
      all.addAll(b.assignment());
      assertEquals(6, all.size(), "every partition owned once");
      assertEquals(3, revokedFromFirst.get(), "only the three that moved were revoked");
      assertTrue(keptByFirst.containsAll(a.assignment()), "the first kept its own");
    }
  }

  /** Static membership: a member that leaves and comes back with its group.instance.id within the session gets its partitions back without a rebalance of the others. */
  @Test
  void aStaticMemberRejoinsWithoutARebalance() {
    Properties one = props("static-group");
    one.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "member-one");
    one.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "30000");
    Properties two = props("static-group");
    two.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "member-two");
    two.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "30000");
    AtomicInteger rebalancesOfTwo = new AtomicInteger();
    try (KafkaConsumer<String, String> b = new KafkaConsumer<>(two)) {
      Set<TopicPartition> firstAssignment;
      try (KafkaConsumer<String, String> a = new KafkaConsumer<>(one)) {
        a.subscribe(List.of("static"));
        b.subscribe(List.of("static"), new ConsumerRebalanceListener() {
          @Override
          public void onPartitionsRevoked(Collection<TopicPartition> parts) {}

          @Override
          public void onPartitionsAssigned(Collection<TopicPartition> parts) {
            rebalancesOfTwo.incrementAndGet();
          }
        });
        pollUntil(List.of(a, b),
            () -> a.assignment().size() == 2 && b.assignment().size() == 2,
            "two partitions each");
        firstAssignment = new HashSet<>(a.assignment());
      }
      int before = rebalancesOfTwo.get();
      // The static member closed (no LeaveGroup for a static member) and
      // comes back under its instance id.
      try (KafkaConsumer<String, String> again = new KafkaConsumer<>(one)) {
        again.subscribe(List.of("static"));
        pollUntil(List.of(again, b), () -> again.assignment().size() == 2, "the static member's partitions back");
        assertEquals(firstAssignment, again.assignment(), "the same partitions");
        for (int i = 0; i < 10; i++) {
          b.poll(Duration.ofMillis(100));
        }
      }
      assertEquals(before, rebalancesOfTwo.get(), "the other member was not rebalanced");
      assertFalse(b.assignment().isEmpty());
    }
  }
}
