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

/** A sluice-broker process on loopback with a data directory of its own. */
final class SluiceBroker implements AutoCloseable {
  private final Process process;
  private final Path dataDir;
  private final int port;

  private SluiceBroker(Process process, Path dataDir, int port) {
    this.process = process;
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

  /** Starts one broker (no flags but its ports and data directory, plus extra). */
  static SluiceBroker start(String... extra) throws Exception {
    Path bin = binary();
    if (!Files.isExecutable(bin)) {
      throw new IllegalStateException(bin + " not found: build it with `cargo build -p sluice-broker`");
    }
    Path dir = Files.createTempDirectory("sluice-java-");
    int port = freePort();
    int metrics = freePort();
    List<String> cmd = new ArrayList<>(List.of(
        bin.toString(),
        "--listeners", "127.0.0.1:" + port,
        "--metrics-listener", "127.0.0.1:" + metrics,
        "--log-dirs", dir.resolve("data").toString()));
    cmd.addAll(List.of(extra));
    ProcessBuilder pb = new ProcessBuilder(cmd)
        .redirectErrorStream(true)
        .redirectOutput(dir.resolve("broker.log").toFile());
    pb.environment().keySet().removeIf(k -> k.startsWith("SLUICE_"));
    Process p = pb.start();
    SluiceBroker b = new SluiceBroker(p, dir, port);
    Instant deadline = Instant.now().plus(Duration.ofSeconds(30));
    while (Instant.now().isBefore(deadline)) {
      if (!p.isAlive()) {
        throw new IllegalStateException("broker exited at start: " + b.log());
      }
      try (Socket s = new Socket()) {
        s.connect(new InetSocketAddress("127.0.0.1", port), 200);
        return b;
      } catch (IOException notYet) {
        Thread.sleep(50);
      }
    }
    b.close();
    throw new IllegalStateException("broker did not listen within 30 s: " + b.log());
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
    process.destroy();
    if (!process.waitFor(30, java.util.concurrent.TimeUnit.SECONDS)) {
      process.destroyForcibly().waitFor();
    }
    try (Stream<Path> files = Files.walk(dataDir)) {
      files.sorted(Comparator.reverseOrder()).map(Path::toFile).forEach(File::delete);
    }
  }
}
