package httpapi

import "fmt"

// prefixEnd returns the range end that selects every key starting with
// prefix, computed as etcd's clientv3.GetPrefixRangeEnd: the prefix cut
// after its last byte below 0xff, that byte incremented. A prefix of only
// 0xff bytes has no such end, so the result is "\x00", which means every
// key ≥ prefix.
func prefixEnd(prefix []byte) []byte {
	for i := len(prefix) - 1; i >= 0; i-- {
		if prefix[i] < 0xff {
			end := append([]byte(nil), prefix[:i+1]...)
			end[i]++
			return end
		}
	}
	return []byte{0}
}

// rangeEnd returns the range end a JSON range (key, range_end, prefix)
// asks for: the prefix end of key, or range_end decoded, or nil for key
// alone. field names the range in errors.
func rangeEnd(c codec, field string, key []byte, end string, prefix bool) ([]byte, error) {
	switch {
	case prefix && end != "":
		return nil, fmt.Errorf("%w: %s: give prefix or range_end, not both", errInvalidArgument, field)
	case prefix:
		return prefixEnd(key), nil
	case end != "":
		return c.decode(field+".range_end", end)
	default:
		return nil, nil
	}
}
