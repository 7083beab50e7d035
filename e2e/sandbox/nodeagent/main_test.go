package nodeagent_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/submariner-go/submariner/e2e/sandbox/nodeagent"
)

// workloadEntrypoint is the in-image path of the test workload; the test binary
// runs as the workload when started under that name.
const workloadEntrypoint = "/workload"

func TestMain(m *testing.M) {
	nodeagent.Init()
	if filepath.Base(os.Args[0]) == filepath.Base(workloadEntrypoint) {
		os.Exit(workload(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// workload is the test binary acting as a container. Modes:
//
//	serve          print facts, answer TCP :8080 with "pod=<POD_NAME>", HTTP :8081
//	               (/ready is 200 once /data/ready exists), exit 0 on SIGTERM
//	exit CODE      print facts and exit with CODE
//	ignore-term    print facts, ignore SIGTERM, run until killed
func workload(args []string) int {
	if len(args) == 0 {
		fmt.Fprintln(os.Stderr, "workload: no mode")
		return 2
	}
	printFacts()
	switch args[0] {
	case "serve":
		return serve()
	case "exit":
		code, _ := strconv.Atoi(args[1])
		fmt.Fprintf(os.Stderr, "exiting with %d\n", code)
		return code
	case "ignore-term":
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM)
		for range sig {
			fmt.Println("got SIGTERM, ignoring it")
		}
	}
	return 2
}

// printFacts prints the environment, hostname and effective capabilities, one
// per line, for the tests to read from the logs.
func printFacts() {
	env := os.Environ()
	sort.Strings(env)
	for _, e := range env {
		fmt.Println("ENV " + e)
	}
	h, _ := os.Hostname()
	fmt.Println("HOSTNAME " + h)
	if f, err := os.Open("/proc/self/status"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
				fmt.Println("CAPEFF " + strings.TrimSpace(v))
			}
		}
		f.Close()
	}
	fmt.Println("STARTED")
}

func serve() int {
	ln, err := net.Listen("tcp", ":8080")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Printf("accepted tcp from %s\n", c.RemoteAddr())
			_, _ = io.WriteString(c, "pod="+os.Getenv("POD_NAME")+"\n")
			c.Close()
		}
	}()
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
		if _, err := os.Stat("/data/ready"); err != nil {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready")
	})
	go func() { _ = http.ListenAndServe(":8081", mux) }()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM)
	<-sig
	fmt.Println("got SIGTERM, exiting")
	return 0
}
