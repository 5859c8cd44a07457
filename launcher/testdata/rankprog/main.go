// Command rankprog is the rank program of the launcher's tests. Its first argument picks a
// behaviour; it reads RANK, GORUN_RESTART_COUNT... from its environment like a real rank.
//
//	env                      print the launcher's variables as KEY=value lines, and its executable
//	lines N LEN              print N lines of LEN bytes to stdout and stderr from two goroutines,
//	                         each line written in small pieces, then a last line without newline
//	fail R CODE [SECS]       rank R writes to stderr and exits CODE after SECS (default 0.2);
//	                         other ranks wait for a signal (default TERM handling: they die)
//	ignoreterm               ignore SIGTERM, print "ignoring SIGTERM pid=N" and sleep
//	trap                     print "ready", then on SIGINT/SIGTERM print "got <signal>" and exit 0
//	spawn                    start a grandchild (rankprog sleep) and sleep; print both pids
//	procs                    print runtime.GOMAXPROCS(0)
//	sleep                    sleep until killed
//	restart R UNTIL CODE     print the restart count; rank R exits CODE while
//	                         GORUN_RESTART_COUNT < UNTIL; everyone else (and R afterwards) exits 0
//	                         after 0.3s, or waits for a signal while R is failing
//	exit CODE                exit CODE at once
//	errorfile R CODE MSG     rank R records MSG in its TORCHELASTIC_ERROR_FILE (package errorfile)
//	                         and exits CODE; other ranks wait for a signal
//	envfail R                print the variables as "env" does; in attempt 0 rank R then exits 3
//	                         (the others wait for a signal); in later attempts everyone exits 0
//	preempt [R]              print "ready", then on SIGTERM print "saving" and exit 75 (package
//	                         preempt's contract: checkpoint saved); rank R instead dies of the signal
//	elastic FILE             print "elastic rank=R world=W node=N version=V restart=K master=A",
//	                         then exit 0 once FILE exists (polling); TERM kills it
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ringtrain/ringtrain/errorfile"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "rankprog: missing mode")
		os.Exit(2)
	}
	rank, _ := strconv.Atoi(os.Getenv("RANK"))
	restart, _ := strconv.Atoi(os.Getenv("GORUN_RESTART_COUNT"))
	arg := func(i int) int {
		n, err := strconv.Atoi(os.Args[i])
		if err != nil {
			fmt.Fprintf(os.Stderr, "rankprog: bad argument %q\n", os.Args[i])
			os.Exit(2)
		}
		return n
	}
	switch os.Args[1] {
	case "env":
		for _, k := range []string{"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "NODE_RANK",
			"NNODES", "MASTER_ADDR", "MASTER_PORT", "GORUN_TOKEN", "GORUN_RUN_ID", "GORUN_RESTART_COUNT",
			"GORUN_TRANSPORT", "GORUN_SHM", "GOMAXPROCS", "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE",
			"TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_ERROR_FILE"} {
			fmt.Printf("%s=%s\n", k, os.Getenv(k))
		}
		fmt.Printf("RUNTIME_GOMAXPROCS=%d\n", runtime.GOMAXPROCS(0))
		exe, _ := os.Executable()
		fmt.Printf("EXE=%s\n", exe)
		fmt.Printf("ARGS=%s\n", strings.Join(os.Args[2:], "|"))
	case "lines":
		n, length := arg(2), arg(3)
		var wg sync.WaitGroup
		for _, f := range []*os.File{os.Stdout, os.Stderr} {
			wg.Add(1)
			go func(f *os.File) {
				defer wg.Done()
				for i := 0; i < n; i++ {
					line := []byte(Line(rank, i, length) + "\n")
					for len(line) > 0 { // small pieces, so a careless launcher would interleave
						k := min(len(line), 1000)
						f.Write(line[:k])
						line = line[k:]
					}
				}
			}(f)
		}
		wg.Wait()
		fmt.Printf("tail-without-newline r%d", rank)
	case "fail":
		secs := 0.2
		if len(os.Args) > 4 {
			secs, _ = strconv.ParseFloat(os.Args[4], 64)
		}
		if rank == arg(2) {
			time.Sleep(time.Duration(secs * float64(time.Second)))
			for i := 0; i < 15; i++ {
				fmt.Fprintf(os.Stderr, "stderr line %d of failing rank %d\n", i, rank)
			}
			os.Exit(arg(3))
		}
		fmt.Println("waiting")
		time.Sleep(time.Hour)
	case "ignoreterm":
		signal.Ignore(syscall.SIGTERM)
		fmt.Printf("ignoring SIGTERM pid=%d\n", os.Getpid())
		time.Sleep(time.Hour)
	case "trap":
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		fmt.Println("ready")
		s := <-ch
		fmt.Printf("got %v\n", s)
	case "spawn":
		self, _ := os.Executable()
		cmd := exec.Command(self, "sleep")
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Printf("pids %d %d\n", os.Getpid(), cmd.Process.Pid)
		time.Sleep(time.Hour)
	case "procs":
		fmt.Println(runtime.GOMAXPROCS(0))
	case "sleep":
		time.Sleep(time.Hour)
	case "restart":
		fmt.Printf("start rank=%d restart=%d\n", rank, restart)
		if restart < arg(3) {
			if rank == arg(2) {
				time.Sleep(300 * time.Millisecond)
				fmt.Fprintf(os.Stderr, "rank %d fails at restart %d\n", rank, restart)
				os.Exit(arg(4))
			}
			time.Sleep(time.Hour)
		}
		time.Sleep(300 * time.Millisecond)
		fmt.Printf("done rank=%d restart=%d\n", rank, restart)
	case "exit":
		os.Exit(arg(2))
	case "errorfile":
		if rank == arg(2) {
			time.Sleep(200 * time.Millisecond)
			if _, err := errorfile.Record(errors.New(os.Args[4])); err != nil {
				fmt.Fprintln(os.Stderr, "rankprog:", err)
			}
			fmt.Fprintln(os.Stderr, "rankprog: failing on purpose")
			os.Exit(arg(3))
		}
		fmt.Println("waiting")
		time.Sleep(time.Hour)
	case "envfail":
		for _, k := range []string{"RANK", "WORLD_SIZE", "NODE_RANK", "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE",
			"GORUN_RUN_ID", "GORUN_RESTART_COUNT", "TORCHELASTIC_RESTART_COUNT", "TORCHELASTIC_RUN_ID", "TORCHELASTIC_ERROR_FILE"} {
			fmt.Printf("%s=%s\n", k, os.Getenv(k))
		}
		if restart == 0 {
			if rank == arg(2) {
				time.Sleep(300 * time.Millisecond)
				os.Exit(3)
			}
			time.Sleep(time.Hour)
		}
	case "preempt":
		if len(os.Args) > 2 && rank == arg(2) {
			fmt.Println("ready")
			time.Sleep(time.Hour)
		}
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM)
		fmt.Println("ready")
		<-ch
		fmt.Println("saving")
		os.Exit(75)
	case "elastic":
		fmt.Printf("elastic rank=%d world=%s node=%s version=%s restart=%d master=%s\n", rank, os.Getenv("WORLD_SIZE"),
			os.Getenv("NODE_RANK"), os.Getenv("GORUN_WORLD_VERSION"), restart, os.Getenv("MASTER_ADDR"))
		for {
			if _, err := os.Stat(os.Args[2]); err == nil {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	default:
		fmt.Fprintf(os.Stderr, "rankprog: unknown mode %q\n", os.Args[1])
		os.Exit(2)
	}
}

// Line is line i of rank r in the "lines" mode: a header, then a pattern that depends on both,
// padded to length bytes. The test recomputes it to check every byte.
func Line(r, i, length int) string {
	head := fmt.Sprintf("r%d:%d:", r, i)
	var b strings.Builder
	b.WriteString(head)
	for b.Len() < length {
		b.WriteByte(byte('a' + (r*7+i+b.Len())%26))
	}
	return b.String()
}
