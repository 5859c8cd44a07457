package shmtransport

import (
	"fmt"
	"github.com/ringtrain/ringtrain/jobenv"
	"log/slog"
	"os"
	"time"
)

// Wait is how a blocked Read or Write waits for the other process.
type Wait int

const (
	// WaitBlock (the zero value) sleeps at once until the peer has published what was asked
	// for (or, writing, made room for it): the goroutine parks on the link's wake-up socket
	// and costs no CPU while it waits. Measured on a 2-core machine (with the cross-process
	// benchmark that benchmarks/allreduce/sweep.sh has since replaced), it moved 64 MiB
	// AllReduces as fast as or faster than spinning first, at 2 and 4 ranks and with 1 or 2
	// threads per rank: when ranks fill the cores, a spinning waiter takes the core its peer
	// needs to produce what it waits for.
	WaitBlock Wait = iota
	// WaitSpinThenBlock polls the ring for Options.SpinTime, yielding the processor between
	// polls, and then sleeps as WaitBlock does. It can shorten the latency of small messages
	// where every rank has a core of its own.
	WaitSpinThenBlock
	// WaitSpin never sleeps: it polls and yields until the peer publishes. It holds a core
	// per blocked call and is only for measuring the other two (it collapses as soon as
	// ranks share cores).
	WaitSpin
)

func (w Wait) String() string {
	switch w {
	case WaitSpinThenBlock:
		return "spin-then-block"
	case WaitBlock:
		return "block"
	case WaitSpin:
		return "spin"
	}
	return fmt.Sprintf("Wait(%d)", int(w))
}

// Defaults for the zero values of Options.
const (
	DefaultRingBytes        = 4 << 20
	DefaultSpinTime         = 20 * time.Microsecond
	DefaultLivenessInterval = 100 * time.Millisecond
	// DefaultPublishBytes is how many bytes a writer copies before publishing them (and a
	// reader before releasing them), so that both sides work on one large buffer in parallel.
	DefaultPublishBytes = 64 << 10
)

// Options configures Wrap. The zero value is ModeAuto with the defaults below.
type Options struct {
	// Mode chooses between shared memory and the base transport; zero is ModeAuto. Use
	// ModeFromEnv to honour GORUN_TRANSPORT. Both ends of a link must agree: a link where
	// one side wants ModeShm and the other ModeQUIC fails with an error naming the peer.
	Mode Mode
	// PeerMode, if not nil, gives the mode for links to one peer and overrides Mode for it
	// (tests use it to force some edges of one ring onto QUIC). Both ends of an edge must
	// return the same answer for each other. Nil means Mode for every peer.
	PeerMode func(peer int) Mode
	// RingBytes is the size of each direction's ring; a power of two from 4 KiB to 1 GiB.
	// Zero means DefaultRingBytes. Each shared-memory link maps 2·RingBytes + 4 KiB.
	RingBytes int
	// Wait is how blocked calls wait; zero is WaitBlock.
	Wait Wait
	// SleepOnFutex makes blocked calls sleep on a futex word in the mapping instead of in a
	// Read on the link's wake-up socket (the default, false). A futex sleep costs fewer
	// system calls but holds its OS thread and the Go runtime's P until the runtime takes the
	// P back, which starves the rank's other goroutine when GOMAXPROCS is 1 (as gorun sets it
	// when ranks fill the cores); it also learns of a dead peer only by polling (every
	// LivenessInterval). For measurements.
	SleepOnFutex bool
	// SpinTime is how long WaitSpinThenBlock polls before sleeping; zero means
	// DefaultSpinTime.
	SpinTime time.Duration
	// PublishBytes is the granularity at which a writer publishes and a reader releases
	// bytes; zero means DefaultPublishBytes.
	PublishBytes int
	// LivenessInterval is how often a blocked call checks that a peer on the same host is
	// still alive (its process, the control link); zero means DefaultLivenessInterval.
	LivenessInterval time.Duration
	// Dir is where the shared-memory files are made; empty means $GORUN_SHM_DIR, or
	// DefaultDir (/dev/shm) when that is unset (DirFromEnv). Each link reserves its
	// 2·RingBytes + 4 KiB there up front; where that fails (a full tmpfs) the link stays on
	// the base transport and Logger gets one warning per peer.
	Dir string
	// Logger receives the warning about a link that could not reserve shared memory and
	// fell back to the base transport; nil means slog.Default().
	Logger *slog.Logger
	// JobID goes into file names so that an operator can tell whose files they are; empty
	// means $GORUN_RUN_ID (set by gorun), or "job".
	JobID string
	// BaseKind names the base transport in Kind; empty means "quic".
	BaseKind string
	// KeepStale skips the CleanStale pass that Wrap otherwise runs on Dir.
	KeepStale bool
}

// withDefaults fills zero fields and checks the others.
func (o Options) withDefaults() (Options, error) {
	if o.Mode < ModeAuto || o.Mode > ModeShm {
		return o, fmt.Errorf("shmtransport: unknown mode %d", int(o.Mode))
	}
	if o.RingBytes == 0 {
		o.RingBytes = DefaultRingBytes
	}
	if err := checkRingBytes(uint64(o.RingBytes)); err != nil {
		return o, fmt.Errorf("shmtransport: Options.RingBytes: %v", err)
	}
	if o.Wait < WaitBlock || o.Wait > WaitSpin {
		return o, fmt.Errorf("shmtransport: unknown wait strategy %d", int(o.Wait))
	}
	if o.SpinTime == 0 {
		o.SpinTime = DefaultSpinTime
	}
	if o.SpinTime < 0 {
		return o, fmt.Errorf("shmtransport: Options.SpinTime %v is negative", o.SpinTime)
	}
	if o.PublishBytes == 0 {
		o.PublishBytes = DefaultPublishBytes
	}
	if o.PublishBytes < 0 {
		return o, fmt.Errorf("shmtransport: Options.PublishBytes %d is negative", o.PublishBytes)
	}
	if o.LivenessInterval == 0 {
		o.LivenessInterval = DefaultLivenessInterval
	}
	if o.LivenessInterval < 0 {
		return o, fmt.Errorf("shmtransport: Options.LivenessInterval %v is negative", o.LivenessInterval)
	}
	if o.Dir == "" {
		o.Dir = DirFromEnv()
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.JobID == "" {
		o.JobID = os.Getenv(jobenv.RunID)
	}
	if o.BaseKind == "" {
		o.BaseKind = "quic"
	}
	return o, nil
}

// ReserveError is the error of a link whose shared-memory file could not get its pages
// reserved (typically ENOSPC: the tmpfs is full or too small). Such a link stays on the base
// transport (an error in ModeShm).
type ReserveError struct {
	Dir   string
	Bytes int64
	Err   error
}

func (e *ReserveError) Error() string {
	return fmt.Sprintf("shmtransport: cannot reserve %s in %s: %v", sizeString(e.Bytes), e.Dir, e.Err)
}

func (e *ReserveError) Unwrap() error { return e.Err }
