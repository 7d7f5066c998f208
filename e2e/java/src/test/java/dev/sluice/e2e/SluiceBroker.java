package dev.sluice.e2e;

import java.io.File;
import java.io.IOException;
import java.net.InetSocketAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.Paths;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.stream.Stream;

/**
 * A sluice-broker process on loopback with a data directory of its own; it can be killed
 * (SIGKILL) and started again on the same ports and data.
 */
final class SluiceBroker implements AutoCloseable {
  private final List<String> command;
  private final Path dataDir;
  private final int port;
  private Process process;

  private SluiceBroker(List<String> command, Path dataDir, int port) {
    this.command = command;
    this.dataDir = dataDir;
    this.port = port;
  }

  /** The broker binary: -Dsluice.broker, else the workspace's debug build. */
  static Path binary() {
    String given = System.getProperty("sluice.broker");
    if (given != null && !given.isEmpty()) {
      return Paths.get(given);
    }
    return Paths.get("..", "..", "target", "debug", "sluice-broker").toAbsolutePath().normalize();
  }

  static int freePort() throws IOException {
    try (ServerSocket s = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
      return s.getLocalPort();
    }
  }

  /** A broker not yet started: no flags but its ports and data directory, plus extra. */
  private static SluiceBroker create(String... extra) throws Exception {
    int port = freePort();
    List<String> listeners = List.of("--listeners", "127.0.0.1:" + port);
    return create(port, listeners, extra);
  }

  /**
   * A broker not yet started whose {@code extra} flags give its listeners; {@code port} is the one
   * of them it is waited on and named by.
   */
  private static SluiceBroker create(int port, List<String> listeners, String... extra)
      throws Exception {
    Path bin = binary();
    if (!Files.isExecutable(bin)) {
      throw new IllegalStateException(bin + " not found: build it with `cargo build -p sluice-broker`");
    }
    Path dir = Files.createTempDirectory("sluice-java-");
    int metrics = freePort();
    List<String> cmd = new ArrayList<>(List.of(bin.toString()));
    cmd.addAll(listeners);
    cmd.addAll(List.of(
        "--metrics-listener", "127.0.0.1:" + metrics,
        "--log-dirs", dir.resolve("data").toString()));
    cmd.addAll(List.of(extra));
    return new SluiceBroker(cmd, dir, port);
  }

  /** Starts one broker whose {@code extra} flags give its {@code --listeners}; see create. */
  static SluiceBroker startListening(int port, String... extra) throws Exception {
    SluiceBroker b = create(port, List.of(), extra);
    b.spawn();
    b.awaitListening();
    return b;
  }

  /** Starts one broker and waits until it listens. */
  static SluiceBroker start(String... extra) throws Exception {
    SluiceBroker b = create(extra);
    b.spawn();
    b.awaitListening();
    return b;
  }

  /**
   * Starts {@code n} brokers as one cluster (node ids 0..n-1, the first three the metadata
   * quorum's voters) and waits until every one is in the cluster's metadata.
   */
  static List<SluiceBroker> cluster(int n) throws Exception {
    List<Integer> internal = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      internal.add(freePort());
    }
    StringBuilder voters = new StringBuilder();
    for (int i = 0; i < Math.min(n, 3); i++) {
      voters.append(i == 0 ? "" : ",").append(i).append("@127.0.0.1:").append(internal.get(i));
    }
    List<SluiceBroker> brokers = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      brokers.add(create("--node-id", Integer.toString(i),
          "--internal-listener", "127.0.0.1:" + internal.get(i),
          "--controller-quorum-voters", voters.toString()));
    }
    for (SluiceBroker b : brokers) {
      b.spawn();
    }
    for (SluiceBroker b : brokers) {
      b.awaitListening();
    }
    return brokers;
  }

  private void spawn() throws IOException {
    ProcessBuilder pb = new ProcessBuilder(command)
        .redirectErrorStream(true)
        .redirectOutput(ProcessBuilder.Redirect.appendTo(dataDir.resolve("broker.log").toFile()));
    pb.environment().keySet().removeIf(k -> k.startsWith("SLUICE_"));
    process = pb.start();
  }

  private void awaitListening() throws Exception {
    Instant deadline = Instant.now().plus(Duration.ofSeconds(30));
    while (Instant.now().isBefore(deadline)) {
      if (!process.isAlive()) {
        throw new IllegalStateException("broker exited at start: " + log());
      }
      try (Socket s = new Socket()) {
        s.connect(new InetSocketAddress("127.0.0.1", port), 200);
        return;
      } catch (IOException notYet) {
        Thread.sleep(50);
      }
    }
    throw new IllegalStateException("broker did not listen within 30 s: " + log());
  }

  /** kill -9: no shutdown, nothing flushed that the broker had not flushed itself. */
  void kill() throws InterruptedException {
    process.destroyForcibly().waitFor();
  }

  /** Starts the broker again on its ports and data directory. */
  void restart() throws Exception {
    spawn();
    awaitListening();
  }

  String bootstrap() {
    return "127.0.0.1:" + port;
  }

  String log() {
    try {
      return Files.readString(dataDir.resolve("broker.log"));
    } catch (IOException e) {
      return "(no log: " + e + ")";
    }
  }

  @Override
  public void close() throws Exception {
    if (process != null) {
      process.destroy();
      if (!process.waitFor(30, java.util.concurrent.TimeUnit.SECONDS)) {
        process.destroyForcibly().waitFor();
      }
    }
    try (Stream<Path> files = Files.walk(dataDir)) {
      files.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
    }
  }
}
