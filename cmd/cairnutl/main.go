// Command cairnutl is Cairn's offline tool, the counterpart of etcdutl: it
// works on files, with no member running.
//
//	cairnutl snapshot status FILE [-w simple|json|fields|table]
//	cairnutl snapshot restore FILE --data-dir DIR --storage-engine memory|rocksdb
//	    [--name --initial-cluster --initial-cluster-token
//	     --initial-advertise-peer-urls --skip-hash-check
//	     --bump-revision N --mark-compacted]
//
// Both take snapshots saved from Cairn or etcd (etcdctl snapshot save) and
// the db file of a stopped etcd member (with --skip-hash-check).
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/dustin/go-humanize"
	flag "github.com/spf13/pflag"
	"go.uber.org/zap"

	"github.com/cairn-kv/cairn/internal/config"
	"github.com/cairn-kv/cairn/internal/etcdformat"
	"github.com/cairn-kv/cairn/internal/server"
)

// Exit statuses, as etcdutl's.
const (
	exitError   = 1
	exitBadArgs = 2
)

const usage = `Usage:
  cairnutl snapshot status FILE [-w simple|json|fields|table]
  cairnutl snapshot restore FILE [--data-dir DIR] [--storage-engine memory|rocksdb]
      [--name NAME] [--initial-cluster NAME=URL,...] [--initial-cluster-token TOKEN]
      [--initial-advertise-peer-urls URL,...] [--skip-hash-check]
      [--bump-revision N --mark-compacted]
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) < 2 || args[0] != "snapshot" {
		fmt.Fprint(stderr, usage)
		return exitBadArgs
	}
	switch args[1] {
	case "status":
		return status(args[2:], stdout, stderr)
	case "restore":
		return restore(args[2:], stdout, stderr)
	}
	fmt.Fprint(stderr, usage)
	return exitBadArgs
}

// fail prints err as etcdutl prints its errors and returns code.
func fail(stderr io.Writer, code int, err error) int {
	fmt.Fprintf(stderr, "Error: %v\n", err)
	return code
}

func status(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.StringP("write-out", "w", "simple", "output format: simple, json, fields or table")
	if err := fs.Parse(args); err != nil {
		return exitBadArgs
	}
	if fs.NArg() != 1 {
		return fail(stderr, exitBadArgs, errors.New("snapshot status requires exactly one argument"))
	}
	dir, err := os.MkdirTemp("", "cairnutl-")
	if err != nil {
		return fail(stderr, exitError, err)
	}
	defer os.RemoveAll(dir)
	// Status reads the file as it is, trailer or not, as etcdutl does.
	f, err := etcdformat.Open(fs.Arg(0), dir, true)
	if err != nil {
		return fail(stderr, exitError, err)
	}
	defer f.Close()
	st, err := f.Status()
	if err != nil {
		return fail(stderr, exitError, err)
	}
	row := []string{fmt.Sprintf("%x", st.Hash), fmt.Sprint(st.Revision), fmt.Sprint(st.TotalKey),
		humanize.Bytes(uint64(st.TotalSize)), st.Version}
	switch *out {
	case "simple":
		fmt.Fprintln(stdout, strings.Join(row, ", "))
	case "json":
		b, _ := json.Marshal(st)
		fmt.Fprintln(stdout, string(b))
	case "fields":
		fmt.Fprintf(stdout, "\"Hash\" : %d\n\"Revision\" : %d\n\"Keys\" : %d\n\"Size\" : %d\n\"Version\" : %s\n",
			st.Hash, st.Revision, st.TotalKey, st.TotalSize, st.Version)
	case "table":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "HASH\tREVISION\tTOTAL KEYS\tTOTAL SIZE\tVERSION")
		fmt.Fprintln(tw, strings.Join(row, "\t"))
		tw.Flush()
	default:
		return fail(stderr, exitBadArgs, fmt.Errorf("unknown output format %q", *out))
	}
	return 0
}

func restore(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		dataDir  = fs.String("data-dir", "", "path to the output data directory (default NAME.etcd)")
		engine   = fs.String("storage-engine", "rocksdb", "storage engine of the restored member: memory or rocksdb")
		name     = fs.String("name", "default", "human-readable name of this member")
		cluster  = fs.String("initial-cluster", "default=http://localhost:2380", "initial cluster configuration for the restored cluster")
		token    = fs.String("initial-cluster-token", "etcd-cluster", "initial cluster token of the restored cluster")
		peerURLs = fs.String("initial-advertise-peer-urls", "http://localhost:2380", "this member's peer URLs")
		skipHash = fs.Bool("skip-hash-check", false, "ignore the snapshot's integrity hash (needed for a member's db file)")
		bump     = fs.Uint64("bump-revision", 0, "how much to raise the latest revision after restore")
		compact  = fs.Bool("mark-compacted", false, "mark the latest revision after restore compacted (required with --bump-revision)")
	)
	// etcdutl's flags that Cairn has no use for are accepted.
	fs.String("wal-dir", "", "ignored: Cairn keeps its raft log in the data directory")
	fs.Uint64("initial-memory-map-size", 0, "ignored: bbolt only")
	if err := fs.Parse(args); err != nil {
		return exitBadArgs
	}
	if fs.NArg() != 1 {
		return fail(stderr, exitBadArgs, errors.New("snapshot restore requires exactly one argument"))
	}
	if (*bump == 0) == *compact {
		return fail(stderr, exitBadArgs, errors.New("--mark-compacted required if --revision-bump > 0"))
	}
	if *dataDir == "" {
		*dataDir = *name + ".etcd"
	}
	// The member's configuration is checked as the member itself will
	// check it when it starts on the directory.
	cfg, err := config.Parse([]string{
		"--name", *name, "--data-dir", *dataDir, "--storage-engine", *engine,
		"--initial-cluster", *cluster, "--initial-cluster-token", *token,
		"--initial-advertise-peer-urls", *peerURLs,
	}, nil, stderr)
	if err != nil {
		return fail(stderr, exitBadArgs, err)
	}
	lg, err := zap.NewProduction()
	if err != nil {
		return fail(stderr, exitError, err)
	}
	defer func() { _ = lg.Sync() }()
	res, err := server.RestoreSnapshot(cfg, fs.Arg(0), server.RestoreOptions{
		SkipHashCheck: *skipHash, BumpRevision: *bump, MarkCompacted: *compact,
	}, lg)
	if err != nil {
		return fail(stderr, exitError, err)
	}
	fmt.Fprintf(stdout, "restored %s into %s (%s): revision %d, %d records, %d leases\n",
		fs.Arg(0), *dataDir, *engine, res.Revision, res.Keys, res.Leases)
	return 0
}
