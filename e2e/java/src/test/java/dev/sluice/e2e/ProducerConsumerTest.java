package dev.sluice.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/** Kafka's Java producer and consumer, with their defaults, against one broker. */
class ProducerConsumerTest extends OneBroker {

  static Properties producerProps(String compression) {
    Properties p = new Properties();
    p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
    p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
    p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, compression);
    return p;
  }

  static KafkaConsumer<String, String> consumer(String group) {
    Properties c = new Properties();
    c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
    c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
    c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
    c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    return new KafkaConsumer<>(c);
  }

  static void createTopic(String name, int partitions) throws Exception {
    Properties a = new Properties();
    a.put("bootstrap.servers", broker.bootstrap());
    try (Admin admin = Admin.create(a)) {
      admin.createTopics(List.of(new NewTopic(name, partitions, (short) 1))).all().get();
    }
  }

  /** The producer's defaults (idempotent, acks=all) with each codec: every record read back, in order per partition, at its acknowledged offset. */
  @ParameterizedTest
  @ValueSource(strings = {"none", "gzip", "snappy", "lz4", "zstd"})
  void everyRecordWithEveryCodecIsReadBackAtItsOffset(String codec) throws Exception {
    String topic = "java-" + codec;
    createTopic(topic, 3);
    int n = 3000;
    Map<String, RecordMetadata> acked = new HashMap<>();
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(producerProps(codec))) {
      List<Future<RecordMetadata>> sent = new ArrayList<>();
      for (int i = 0; i < n; i++) {
        sent.add(producer.send(new ProducerRecord<>(topic, "k" + (i % 17), "value-" + i)));
      }
      for (int i = 0; i < n; i++) {
        acked.put("value-" + i, sent.get(i).get());
      }
    }
    Map<String, ConsumerRecord<String, String>> read = new HashMap<>();
    try (KafkaConsumer<String, String> consumer = consumer("g-" + codec)) {
      consumer.subscribe(List.of(topic));
      Instant deadline = Instant.now().plus(Duration.ofSeconds(60));
      while (read.size() < n && Instant.now().isBefore(deadline)) {
        for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
          read.put(r.value(), r);
        }
      }
      consumer.commitSync();
    }
    assertEquals(n, read.size(), "records read back with " + codec);
    for (Map.Entry<String, RecordMetadata> e : acked.entrySet()) {
      ConsumerRecord<String, String> r = read.get(e.getKey());
      assertEquals(e.getValue().partition(), r.partition(), e.getKey());
      assertEquals(e.getValue().offset(), r.offset(), e.getKey());
    }
  }

  /** A consumer group of the new protocol (KIP-848) is not served: the client says so instead of waiting. */
  @Test
  void theNewConsumerGroupProtocolIsRefusedClearly() throws Exception {
    createTopic("java-kip848", 1);
    Properties c = new Properties();
    c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, broker.bootstrap());
    c.put(ConsumerConfig.GROUP_ID_CONFIG, "kip848");
    c.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
    c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
    Instant started = Instant.now();
    Throwable seen = null;
    try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(c)) {
      consumer.subscribe(List.of("java-kip848"));
      Instant deadline = Instant.now().plus(Duration.ofSeconds(30));
      while (Instant.now().isBefore(deadline)) {
        consumer.poll(Duration.ofMillis(500));
      }
    } catch (Exception e) {
      seen = e;
    }
    assertTrue(seen != null, "a consumer of the new protocol was served");
    assertTrue(
        String.valueOf(seen.getMessage()).contains("CONSUMER") || seen instanceof org.apache.kafka.common.errors.UnsupportedVersionException,
        "the error names the unsupported protocol: " + seen);
    assertTrue(Duration.between(started, Instant.now()).toSeconds() < 30, "refused at once, not after a timeout");
  }
}
