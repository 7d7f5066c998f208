// Package gotests drives a real sluice-broker process with Go Kafka
// clients that nobody on the Sluice team wrote (franz-go: kgo and kadm),
// over TCP on loopback.
package gotests

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// broker is one sluice-broker process with its own data directory.
type broker struct {
	addr string
	cmd  *exec.Cmd
}

// brokerBin is the binary the tests start: SLUICE_BROKER_BIN, or the debug
// build of the workspace.
func brokerBin(t *testing.T) string {
	if b := os.Getenv("SLUICE_BROKER_BIN"); b != "" {
		return b
	}
	target := os.Getenv("CARGO_TARGET_DIR")
	if target == "" {
		target = filepath.Join("..", "..", "target")
	}
	bin, err := filepath.Abs(filepath.Join(target, "debug", "sluice-broker"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s: build it with cargo build -p sluice-broker", bin)
	}
	return bin
}

// freePort is a port nothing listens on now.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// startBroker starts a broker on fresh ports and waits until it answers
// TCP; it is killed when the test ends.
func startBroker(t *testing.T) *broker {
	t.Helper()
	dir := t.TempDir()
	port, metrics := freePort(t), freePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	log, err := os.Create(filepath.Join(dir, "broker.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(brokerBin(t),
		"--listeners", addr,
		"--metrics-listener", fmt.Sprintf("127.0.0.1:%d", metrics),
		"--log-dirs", filepath.Join(dir, "data"))
	cmd.Stdout, cmd.Stderr = log, log
	// The broker refuses SLUICE_* settings it does not know.
	for _, kv := range os.Environ() {
		if len(kv) < 7 || kv[:7] != "SLUICE_" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "broker.log")); err == nil {
				t.Logf("broker log:\n%s", b)
			}
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return &broker{addr: addr, cmd: cmd}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("the broker did not listen on %s within 30 s", addr)
	return nil
}
