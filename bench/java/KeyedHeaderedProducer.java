/*
 * The shore-kafka bench's second baseline: Kafka's own Java producer sending records shaped
 * like the Kafka log's (key = the container, the eight pc- identity headers and one h- header,
 * a 150-byte value), as fast as it can with acks=all, measured like ProducerPerformance
 * (records acknowledged over the time from the first send to the last acknowledgement).
 * ProducerPerformance sends records without key or headers, which the broker validates far
 * more cheaply; this says what the same broker does with records like ours. Compiled by the
 * bench with javac against the broker's jars.
 *
 * Arguments: bootstrap topic records recordBytes containers [producer property=value ...]
 */
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicLong;

import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public final class KeyedHeaderedProducer {
  public static void main(String[] args) throws Exception {
    String bootstrap = args[0];
    String topic = args[1];
    int records = Integer.parseInt(args[2]);
    int recordBytes = Integer.parseInt(args[3]);
    int containers = Integer.parseInt(args[4]);
    Properties props = new Properties();
    props.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
    props.put(ProducerConfig.ACKS_CONFIG, "all");
    props.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    props.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
    for (String extra : Arrays.copyOfRange(args, 5, args.length)) {
      int eq = extra.indexOf('=');
      props.put(extra.substring(0, eq), extra.substring(eq + 1));
    }
    byte[] value = new byte[recordBytes];
    Arrays.fill(value, (byte) ' ');
    byte[] origin = utf8("AURORA");
    byte[] stream = utf8("containers");
    byte[] contentType = utf8("application/json");
    byte[] schema = utf8("1");
    byte[][] keys = new byte[containers][];
    byte[][] mqttTopics = new byte[containers][];
    for (int c = 0; c < containers; c++) {
      String name = String.format("C%04d", c);
      keys[c] = utf8(name);
      mqttTopics[c] = utf8("bigblue/containers/" + name + "/reefer");
    }
    AtomicLong acknowledged = new AtomicLong();
    AtomicLong failed = new AtomicLong();
    long startNs = System.nanoTime();
    try (KafkaProducer<byte[], byte[]> producer = new KafkaProducer<>(props)) {
      for (int i = 0; i < records; i++) {
        int container = i % containers;
        long time = 1_763_769_600_000L + i;
        ProducerRecord<byte[], byte[]> record = new ProducerRecord<>(topic, keys[container], value);
        record.headers()
            .add("pc-origin", origin)
            .add("pc-stream", stream)
            .add("pc-topic", keys[container])
            .add("pc-offset", utf8(Integer.toString(i / containers)))
            .add("pc-event-time-ms", utf8(Long.toString(time)))
            .add("pc-ingest-time-ms", utf8(Long.toString(time)))
            .add("pc-content-type", contentType)
            .add("pc-schema", schema)
            .add("h-mqtt-topic", mqttTopics[container]);
        producer.send(record, (metadata, error) -> {
          if (error != null) failed.incrementAndGet();
          else acknowledged.incrementAndGet();
        });
      }
      producer.flush();
    }
    double seconds = (System.nanoTime() - startNs) / 1e9;
    if (failed.get() > 0) {
      System.err.println(failed.get() + " records failed");
      System.exit(1);
    }
    System.out.printf("%d records sent, %.1f records/sec%n", acknowledged.get(), acknowledged.get() / seconds);
  }

  private static byte[] utf8(String text) {
    return text.getBytes(StandardCharsets.UTF_8);
  }
}
