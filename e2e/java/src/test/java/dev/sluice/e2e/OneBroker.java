package dev.sluice.e2e;

import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;

/** A test class with one broker process of its own, started before its tests and stopped after. */
abstract class OneBroker {
  static SluiceBroker broker;

  @BeforeAll
  static void startBroker() throws Exception {
    broker = SluiceBroker.start();
  }

  @AfterAll
  static void stopBroker() throws Exception {
    broker.close();
  }
}
