package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/dodev/hindsight/internal/proctest"
)

// childProc is a running child process whose peak RSS is sampled.
type childProc struct {
	cmd  *exec.Cmd
	log  *os.File
	peak int64 // bytes, the largest VmHWM read
}

func startChild(bin string, logf *os.File, env []string, args ...string) (*childProc, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s %v: %w", bin, args, err)
	}
	return &childProc{cmd: cmd, log: logf}, nil
}

// sample reads the child's peak RSS so far; it fails once the child has
// exited.
func (c *childProc) sample() error {
	rss, err := proctest.PeakRSS(c.cmd.Process.Pid)
	if err != nil {
		return fmt.Errorf("%s exited: %w", c.cmd.Path, err)
	}
	c.peak = max(c.peak, rss)
	return nil
}

// cpu is the CPU time the child has used so far.
func (c *childProc) cpu() (time.Duration, error) { return proctest.CPUTime(c.cmd.Process.Pid) }

// stop interrupts the child and waits for it to exit (at most 30 s, then
// kills it).
func (c *childProc) stop() {
	_ = c.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-done
	}
	c.log.Close()
}
