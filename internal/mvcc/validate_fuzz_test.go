package mvcc

import (
	"errors"
	"slices"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"
)

// The fuzz targets below hold ValidateTxn to refValidateTxn, a reference
// written from etcd's rules (checkTxnRequest and checkIntervals in
// etcd's v3rpc/key.go, with the interval semantics of its pkg/adt) as
// plainly as possible: linear scans, no shared helpers with validate.go.
// Whatever ValidateTxn's implementation becomes, its decision, nil or which
// sentinel, must stay the reference's.

// FuzzValidateTxnProto decodes the input as a TxnRequest (inputs that are
// not one are skipped) and checks that ValidateTxn, with a txn-ops budget
// taken from the input too, returns exactly the error refValidateTxn
// returns.
func FuzzValidateTxnProto(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, maxOps byte) {
		req := &pb.TxnRequest{}
		if err := proto.Unmarshal(data, req); err != nil {
			t.Skip()
		}
		checkValidateTxn(t, req, int(maxOps%8))
	})
}

// FuzzValidateTxnProgram builds a txn tree from a compact program (see
// buildTxnProgram), so that the fuzzer easily reaches nested txns and puts,
// point and ranged deletes over overlapping keys, and checks ValidateTxn
// against refValidateTxn as FuzzValidateTxnProto does.
func FuzzValidateTxnProgram(f *testing.F) {
	f.Fuzz(func(t *testing.T, prog []byte, maxOps byte) {
		checkValidateTxn(t, buildTxnProgram(prog), int(maxOps%8))
	})
}

func checkValidateTxn(t *testing.T, req *pb.TxnRequest, maxOps int) {
	t.Helper()
	got := ValidateTxn(req, maxOps)
	want := refValidateTxn(req, maxOps)
	if got != want && !(want != nil && errors.Is(got, want)) {
		t.Fatalf("ValidateTxn(maxTxnOps=%d) = %v, reference says %v; request:\n%v", maxOps, got, want, req)
	}
}

// refValidateTxn is the reference decision for a txn: first the shape of
// the request, depth first in request order, then the write overlaps of
// the success branch, then those of the failure branch.
func refValidateTxn(req *pb.TxnRequest, maxOps int) error {
	if err := refCheckShape(req, maxOps); err != nil {
		return err
	}
	for _, branch := range [][]*pb.RequestOp{req.GetSuccess(), req.GetFailure()} {
		if _, _, ok := refBranchWrites(branch); !ok {
			return ErrDuplicateKey
		}
	}
	return nil
}

// refCheckShape applies etcd's request checks. The budget of a txn is
// measured by its largest list (compares, success, failure); a nested txn
// gets the budget minus that measure of its parent.
func refCheckShape(t *pb.TxnRequest, budget int) error {
	used := len(t.GetCompare())
	if n := len(t.GetSuccess()); n > used {
		used = n
	}
	if n := len(t.GetFailure()); n > used {
		used = n
	}
	if used > budget {
		return ErrTooManyOps
	}
	for _, c := range t.GetCompare() {
		if len(c.GetKey()) == 0 {
			return ErrEmptyKey
		}
	}
	ops := append(slices.Clone(t.GetSuccess()), t.GetFailure()...)
	for _, op := range ops {
		var err error
		switch {
		case op.GetRequestRange() != nil:
			r := op.GetRequestRange()
			switch {
			case len(r.GetKey()) == 0:
				err = ErrEmptyKey
			case r.GetSortOrder() < pb.RangeRequest_NONE || r.GetSortOrder() > pb.RangeRequest_DESCEND,
				r.GetSortTarget() < pb.RangeRequest_KEY || r.GetSortTarget() > pb.RangeRequest_VALUE:
				err = ErrInvalidSortOption
			}
		case op.GetRequestPut() != nil:
			p := op.GetRequestPut()
			switch {
			case len(p.GetKey()) == 0:
				err = ErrEmptyKey
			case p.GetIgnoreValue() && len(p.GetValue()) > 0:
				err = ErrValueProvided
			case p.GetIgnoreLease() && p.GetLease() != 0:
				err = ErrLeaseProvided
			}
		case op.GetRequestDeleteRange() != nil:
			if len(op.GetRequestDeleteRange().GetKey()) == 0 {
				err = ErrEmptyKey
			}
		case op.GetRequestTxn() != nil:
			err = refCheckShape(op.GetRequestTxn(), budget-used)
		default:
			// No request at all, as etcd's checkRequestOp says.
			err = ErrKeyNotFound
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// refSpan is the key interval a delete covers, as etcd's interval tree
// holds it: a delete without range end covers its key alone; otherwise
// [from, to) is taken byte for byte, so a range end of "\x00" (etcd's
// "every key from here") or one below the key covers nothing.
type refSpan struct {
	from, to string
	single   bool
}

func (s refSpan) covers(k string) bool {
	if s.single {
		return k == s.from
	}
	return s.from <= k && k < s.to
}

func refCovered(spans []refSpan, k string) bool {
	return slices.ContainsFunc(spans, func(s refSpan) bool { return s.covers(k) })
}

// refBranchWrites returns the keys one branch puts and the spans it
// deletes, nested txns included, and false if etcd would refuse the branch:
//   - a nested txn's puts, success then failure, may not repeat a key put by
//     an earlier nested txn of the branch, nor fall in a span deleted by the
//     branch itself or by an earlier nested txn; the failure branch may put
//     the keys its own success branch puts;
//   - then the branch's own puts, in order, may not repeat any key put so
//     far, nor fall in any span deleted by the branch or its nested txns.
//
// Deletes never conflict with each other.
func refBranchWrites(ops []*pb.RequestOp) (puts []string, spans []refSpan, ok bool) {
	for _, op := range ops {
		if d := op.GetRequestDeleteRange(); d != nil {
			spans = append(spans, refSpan{from: string(d.GetKey()), to: string(d.GetRangeEnd()), single: len(d.GetRangeEnd()) == 0})
		}
	}
	for _, op := range ops {
		nested := op.GetRequestTxn()
		if nested == nil {
			continue
		}
		thenPuts, thenSpans, ok := refBranchWrites(nested.GetSuccess())
		if !ok {
			return nil, nil, false
		}
		elsePuts, elseSpans, ok := refBranchWrites(nested.GetFailure())
		if !ok {
			return nil, nil, false
		}
		before := slices.Clone(puts)
		for _, k := range thenPuts {
			if slices.Contains(before, k) || refCovered(spans, k) {
				return nil, nil, false
			}
		}
		for _, k := range elsePuts {
			if slices.Contains(before, k) || refCovered(spans, k) {
				return nil, nil, false
			}
		}
		for _, k := range append(thenPuts, elsePuts...) {
			if !slices.Contains(puts, k) {
				puts = append(puts, k)
			}
		}
		spans = append(append(spans, thenSpans...), elseSpans...)
	}
	for _, op := range ops {
		p := op.GetRequestPut()
		if p == nil {
			continue
		}
		k := string(p.GetKey())
		if slices.Contains(puts, k) || refCovered(spans, k) {
			return nil, nil, false
		}
		puts = append(puts, k)
	}
	return puts, spans, true
}

// Keys and range ends of buildTxnProgram: few and overlapping, so that
// puts and deletes collide often, with the edge cases of etcd's intervals:
// "b\x00" is the successor of "b", "\x00" the smallest key and, as a range
// end, etcd's "every key from here".
var (
	progKeys = []string{"a", "b", "ab", "b\x00", "\x00", "c"}
	progEnds = []string{"\x00", "a", "ab", "b", "b\x00", "c", "\xff", "\x00\x00"}
)

// maxProgDepth bounds how deep buildTxnProgram nests txns.
const maxProgDepth = 6

// buildTxnProgram turns prog into a txn. Each byte is an instruction: the
// low 3 bits the opcode, the high 5 bits its argument x.
//
//	0 put progKeys[x]               4 begin a nested txn in the current branch
//	1 delete progKeys[x]            5 end the current nested txn
//	2 delete [progKeys[x%8], progEnds[next byte]), "d" for x%8 ≥ 6
//	3 get progKeys[x]               6 switch to the failure branch
//	7 an odd op, by x: compare, empty op, empty keys, ignore_value with a
//	  value, ignore_lease with a lease, a bad sort order, or a nested txn
//	  with no branches
func buildTxnProgram(prog []byte) *pb.TxnRequest {
	type frame struct {
		txn     *pb.TxnRequest
		failure bool
	}
	stack := []*frame{{txn: &pb.TxnRequest{}}}
	add := func(op *pb.RequestOp) {
		top := stack[len(stack)-1]
		if top.failure {
			top.txn.Failure = append(top.txn.Failure, op)
		} else {
			top.txn.Success = append(top.txn.Success, op)
		}
	}
	key := func(x byte) []byte { return []byte(progKeys[int(x)%len(progKeys)]) }
	put := func(k []byte) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: k, Value: []byte("v")}}}
	}
	del := func(k, end []byte) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: k, RangeEnd: end}}}
	}
	get := func(r *pb.RangeRequest) *pb.RequestOp {
		return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: r}}
	}
	for i := 0; i < len(prog); i++ {
		ins := prog[i]
		x := ins >> 3
		switch ins & 7 {
		case 0:
			add(put(key(x)))
		case 1:
			add(del(key(x), nil))
		case 2:
			k := []byte("d")
			if int(x%8) < len(progKeys) {
				k = key(x % 8)
			}
			end := progEnds[0]
			if i+1 < len(prog) {
				i++
				end = progEnds[int(prog[i])%len(progEnds)]
			}
			add(del(k, []byte(end)))
		case 3:
			add(get(&pb.RangeRequest{Key: key(x)}))
		case 4:
			if len(stack) < maxProgDepth {
				nested := &pb.TxnRequest{}
				add(&pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: nested}})
				stack = append(stack, &frame{txn: nested})
			}
		case 5:
			if len(stack) > 1 {
				stack = stack[:len(stack)-1]
			}
		case 6:
			stack[len(stack)-1].failure = true
		case 7:
			top := stack[len(stack)-1].txn
			switch x % 8 {
			case 0:
				top.Compare = append(top.Compare, &pb.Compare{Key: key(x / 8)})
			case 1:
				top.Compare = append(top.Compare, &pb.Compare{})
			case 2:
				add(&pb.RequestOp{})
			case 3:
				switch x / 8 % 3 {
				case 0:
					add(put(nil))
				case 1:
					add(del(nil, []byte("b")))
				default:
					add(get(&pb.RangeRequest{}))
				}
			case 4:
				add(&pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key(x / 8), Value: []byte("v"), IgnoreValue: true}}})
			case 5:
				add(&pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key(x / 8), Lease: 1, IgnoreLease: x/8%2 == 0}}})
			case 6:
				add(get(&pb.RangeRequest{Key: key(x / 8), SortOrder: pb.RangeRequest_SortOrder(x / 8 % 4), SortTarget: pb.RangeRequest_SortTarget(x / 8 % 6)}))
			default:
				add(&pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{}}})
			}
		}
	}
	return stack[0].txn
}

// TestTxnProgramReference pins the reference to answers etcd gives, so that
// the fuzz targets compare ValidateTxn with something known to be right.
func TestTxnProgramReference(t *testing.T) {
	const (
		putA, putB, putAB, putBNul, putNul = 0 << 3, 1 << 3, 2 << 3, 3 << 3, 4 << 3
		delA                               = 1
		begin, end, failure                = 4, 5, 6
	)
	tests := []struct {
		name string
		prog []byte
		max  int
		want error
	}{
		{"no ops", nil, 0, nil},
		{"put twice", []byte{putA, putA}, 7, ErrDuplicateKey},
		{"put and delete", []byte{putA, delA}, 7, ErrDuplicateKey},
		{"delete [a, \\x00) covers nothing", []byte{2, 0, putA, putB}, 7, nil},
		{"delete [a, b) covers ab", []byte{2, 3, putAB}, 7, ErrDuplicateKey},
		{"delete [a, b) excludes b", []byte{2, 3, putB}, 7, nil},
		{"delete [b, b\\x00) excludes b\\x00", []byte{2 | 1<<3, 4, putBNul}, 7, nil},
		{"delete [\\x00, \\x00\\x00) covers \\x00", []byte{2 | 4<<3, 7, putNul}, 7, ErrDuplicateKey},
		{"inverted range covers nothing", []byte{2 | 1<<3, 1, putAB}, 7, nil},
		{"branches of a nested txn may share a key", []byte{begin, putA, failure, putA, end}, 7, nil},
		{"two nested txns may not", []byte{begin, putA, end, begin, putA, end}, 7, ErrDuplicateKey},
		{"nested delete before nested put", []byte{begin, delA, end, begin, putA, end}, 7, ErrDuplicateKey},
		{"nested put before nested delete", []byte{begin, putA, end, begin, delA, end}, 7, nil},
		{"level delete after nested put", []byte{begin, putA, end, delA}, 7, ErrDuplicateKey},
		{"failure branch", []byte{putA, failure, putA, delA}, 7, ErrDuplicateKey},
		{"over budget", []byte{putA, putB, putAB, putBNul}, 3, ErrTooManyOps},
		{"nested over what the parent leaves", []byte{3, begin, putB, putAB, end}, 3, ErrTooManyOps},
		{"nested within what the parent leaves", []byte{3, begin, putB, end}, 3, nil},
		{"empty op", []byte{7 | 2<<3}, 7, ErrKeyNotFound},
		{"empty compare key", []byte{7 | 1<<3}, 7, ErrEmptyKey},
		{"ignore_value with a value", []byte{7 | 4<<3}, 7, ErrValueProvided},
		{"ignore_lease with a lease", []byte{7 | 5<<3}, 7, ErrLeaseProvided},
		{"shape errors come first", []byte{putA, putA, 7 | 2<<3}, 7, ErrKeyNotFound},
	}
	for _, tt := range tests {
		if got := refValidateTxn(buildTxnProgram(tt.prog), tt.max); got != tt.want {
			t.Errorf("%s: reference says %v, etcd says %v", tt.name, got, tt.want)
		}
	}
}
