package test

import (
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// This file holds the sequential specification that porcupine checks
// recorded histories of Cairn against: a map of keys to values, checked one
// key at a time, with the four operations the fault test issues.

// kvOpKind is what a recorded operation did.
type kvOpKind int

const (
	kvGet kvOpKind = iota
	kvPut
	kvDelete
	kvCAS // Txn: If(Value(key) = expect) Then Put(key, value) Else Get(key)
)

// kvInput is what a client asked for.
type kvInput struct {
	kind   kvOpKind
	key    string
	value  string // kvPut, kvCAS: the value written
	expect string // kvCAS: the value compared with
}

// kvOutput is what the client was told. An operation whose outcome is
// unknown (a write that timed out or met an error) has unknown set and
// nothing else: the model lets it take effect or not.
type kvOutput struct {
	unknown   bool
	exists    bool   // kvGet, and kvCAS when it failed: the key was found
	value     string // its value
	deleted   int64  // kvDelete
	succeeded bool   // kvCAS
}

// kvState is one key's state.
type kvState struct {
	exists bool
	value  string
}

// kvModel is a key-value map partitioned per key, with etcd's semantics: a
// value comparison with a missing key fails, and a delete reports whether
// the key existed.
var kvModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range history {
			k := op.Input.(kvInput).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() interface{} { return kvState{} },
	Step: func(state, input, output interface{}) (bool, interface{}) {
		st, in, out := state.(kvState), input.(kvInput), output.(kvOutput)
		switch in.kind {
		case kvGet:
			return out.exists == st.exists && out.value == st.value, st
		case kvPut:
			return true, kvState{exists: true, value: in.value}
		case kvDelete:
			ok := out.unknown || (out.deleted == 1) == st.exists
			return ok, kvState{}
		case kvCAS:
			matches := st.exists && st.value == in.expect
			if out.unknown {
				// Only a CAS seen to take effect stays unknown in a
				// checked history (see resolveUnknown); it must have
				// matched.
				return matches, kvState{exists: true, value: in.value}
			}
			if out.succeeded {
				return matches, kvState{exists: true, value: in.value}
			}
			return !matches && out.exists == st.exists && out.value == st.value, st
		}
		return false, st
	},
	Hash: func(state interface{}) uint64 {
		st := state.(kvState)
		h := fnv.New64a()
		if st.exists {
			h.Write([]byte{1})
		}
		h.Write([]byte(st.value))
		return h.Sum64()
	},
	DescribeOperation: func(input, output interface{}) string {
		in, out := input.(kvInput), output.(kvOutput)
		var res string
		switch {
		case out.unknown:
			res = "unknown"
		case in.kind == kvDelete:
			res = fmt.Sprint(out.deleted)
		case in.kind == kvCAS && out.succeeded:
			res = "ok"
		case out.exists:
			res = fmt.Sprintf("%q", out.value)
		default:
			res = "missing"
		}
		switch in.kind {
		case kvGet:
			return fmt.Sprintf("get(%s) -> %s", in.key, res)
		case kvPut:
			return fmt.Sprintf("put(%s, %s) -> %s", in.key, in.value, res)
		case kvDelete:
			return fmt.Sprintf("delete(%s) -> %s", in.key, res)
		default:
			return fmt.Sprintf("cas(%s, %s -> %s) -> %s", in.key, in.expect, in.value, res)
		}
	},
	DescribeState: func(state interface{}) string {
		st := state.(kvState)
		if !st.exists {
			return "missing"
		}
		return fmt.Sprintf("%q", st.value)
	},
}

// checkLinearizable checks history with porcupine for at most timeout and
// fails the test unless the answer is Ok; on Illegal it writes porcupine's
// visualization to a file that outlives the test and logs its path.
func checkLinearizable(t *testing.T, name string, history []porcupine.Operation, timeout time.Duration) {
	t.Helper()
	began := time.Now()
	res, info := porcupine.CheckOperationsVerbose(kvModel, history, timeout)
	t.Logf("porcupine on %d operations (%s): %s in %v", len(history), name, res, time.Since(began).Round(time.Millisecond))
	switch res {
	case porcupine.Ok:
	case porcupine.Unknown:
		t.Errorf("linearizability of %s: unknown, porcupine did not finish within %v", name, timeout)
	default:
		path := filepath.Join(os.TempDir(), fmt.Sprintf("cairn-%s-%s.html",
			strings.NewReplacer("/", "-", " ", "-").Replace(name), time.Now().Format("20060102-150405")))
		if err := porcupine.VisualizePath(kvModel, info, path); err != nil {
			t.Errorf("writing the visualization: %v", err)
		}
		t.Errorf("history of %s is NOT linearizable; porcupine's visualization: %s", name, path)
	}
}

// TestKVModel pins the model down on small histories written by hand, so
// that a pass of the fault test means Cairn behaved, not that the model
// accepts anything.
func TestKVModel(t *testing.T) {
	get := func(c, call, ret int64, v string) porcupine.Operation {
		out := kvOutput{exists: v != "", value: v}
		return porcupine.Operation{ClientId: int(c), Input: kvInput{kind: kvGet, key: "k"}, Output: out, Call: call, Return: ret}
	}
	put := func(c, call, ret int64, v string, unknown bool) porcupine.Operation {
		return porcupine.Operation{ClientId: int(c), Input: kvInput{kind: kvPut, key: "k", value: v}, Output: kvOutput{unknown: unknown}, Call: call, Return: ret}
	}
	del := func(c, call, ret int64, deleted int64) porcupine.Operation {
		return porcupine.Operation{ClientId: int(c), Input: kvInput{kind: kvDelete, key: "k"}, Output: kvOutput{deleted: deleted}, Call: call, Return: ret}
	}
	cas := func(c, call, ret int64, expect, v string, ok bool, cur string) porcupine.Operation {
		out := kvOutput{succeeded: ok, exists: cur != "", value: cur}
		return porcupine.Operation{ClientId: int(c), Input: kvInput{kind: kvCAS, key: "k", value: v, expect: expect}, Output: out, Call: call, Return: ret}
	}
	const never = 1 << 40
	for _, tc := range []struct {
		name string
		ops  []porcupine.Operation
		want bool
	}{
		{"read of a missing key", []porcupine.Operation{get(0, 0, 1, "")}, true},
		{"read after write", []porcupine.Operation{put(0, 0, 1, "a", false), get(1, 2, 3, "a")}, true},
		{"stale read", []porcupine.Operation{put(0, 0, 1, "a", false), put(0, 2, 3, "b", false), get(1, 4, 5, "a")}, false},
		{"read of a value never written", []porcupine.Operation{put(0, 0, 1, "a", false), get(1, 2, 3, "x")}, false},
		{"concurrent read sees either", []porcupine.Operation{put(0, 0, 1, "a", false), put(0, 2, 9, "b", false), get(1, 3, 4, "a"), get(2, 5, 6, "b")}, true},
		{"unknown put taken late", []porcupine.Operation{put(0, 0, never, "a", true), get(1, 2, 3, ""), get(1, 4, 5, "a")}, true},
		{"unknown put cannot be undone", []porcupine.Operation{put(0, 0, never, "a", true), get(1, 2, 3, "a"), get(1, 4, 5, "")}, false},
		{"delete reports existence", []porcupine.Operation{put(0, 0, 1, "a", false), del(0, 2, 3, 1), del(0, 4, 5, 0), get(1, 6, 7, "")}, true},
		{"delete of a missing key reports one", []porcupine.Operation{del(0, 0, 1, 1)}, false},
		{"cas on a missing key fails", []porcupine.Operation{cas(0, 0, 1, "", "a", true, "")}, false},
		{"cas swaps", []porcupine.Operation{put(0, 0, 1, "a", false), cas(0, 2, 3, "a", "b", true, ""), get(1, 4, 5, "b")}, true},
		{"failed cas reports the value", []porcupine.Operation{put(0, 0, 1, "a", false), cas(0, 2, 3, "z", "b", false, "a")}, true},
		{"failed cas on the value it compared", []porcupine.Operation{put(0, 0, 1, "a", false), cas(0, 2, 3, "a", "b", false, "a")}, false},
	} {
		if got := porcupine.CheckOperations(kvModel, tc.ops); got != tc.want {
			t.Errorf("%s: linearizable = %v, want %v", tc.name, got, tc.want)
		}
	}
}
