package jsonx

import (
	"bytes"
	"errors"
	"strconv"
	"unicode/utf8"
)

var errSyntax = errors.New("jsonx: malformed json")

// Find returns the byte range [start,end) of the value of top-level key in the JSON
// object b. ok is false when b is not an object or has no such key. When a key repeats,
// the first one wins, as in fastjson (which sluice reads documents with).
func Find(b []byte, key string) (start, end int, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return 0, 0, false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, 0, false
		}
		if b[i] == '}' {
			return 0, 0, false
		}
		if b[i] == ',' {
			i++
			continue
		}
		if b[i] != '"' {
			return 0, 0, false
		}
		ks := i
		ke, err := skipString(b, i)
		if err != nil {
			return 0, 0, false
		}
		match := keyEquals(b[ks:ke], key)
		i = skipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return 0, 0, false
		}
		i = skipSpace(b, i+1)
		vs := i
		ve, err := skipValue(b, i)
		if err != nil {
			return 0, 0, false
		}
		if match {
			return vs, ve, true
		}
		i = ve
	}
}

// keyEquals compares a raw JSON string token (with quotes) to key. Escaped keys are
// compared after unescaping, which is rare and therefore allowed to allocate.
func keyEquals(tok []byte, key string) bool {
	raw := tok[1 : len(tok)-1]
	for _, c := range raw {
		if c == '\\' {
			s, err := strconv.Unquote(string(tok))
			return err == nil && s == key
		}
	}
	return string(raw) == key
}

// Lookup finds several top-level keys in one pass: ranges[i] is the [start,end) of
// keys[i]'s value (first occurrence), or {-1,-1} when absent. It returns false when b is
// not a well-formed object.
func Lookup(b []byte, keys []string, ranges [][2]int) bool {
	for i := range ranges {
		ranges[i] = [2]int{-1, -1}
	}
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return false
	}
	i++
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			return false
		}
		if b[i] == '}' {
			return true
		}
		if b[i] == ',' {
			i++
			continue
		}
		if b[i] != '"' {
			return false
		}
		ke, err := skipString(b, i)
		if err != nil {
			return false
		}
		key := b[i:ke]
		i = skipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return false
		}
		i = skipSpace(b, i+1)
		ve, err := skipValue(b, i)
		if err != nil {
			return false
		}
		for k := range keys {
			if ranges[k][0] < 0 && keyEquals(key, keys[k]) {
				ranges[k] = [2]int{i, ve}
				break
			}
		}
		i = ve
	}
}

// Edit replaces (or adds) one top-level key's value.
type Edit struct {
	Key   string
	Value []byte // raw JSON
}

// Apply returns b with every edit applied in one pass: the first occurrence of each key
// gets the new value, keys b lacks are added at the end. The result is appended to
// dst[:0]; b must be a JSON object and must not overlap dst.
func Apply(dst, b []byte, edits ...Edit) ([]byte, error) {
	dst = dst[:0]
	var done uint64 // bit i: edit i applied (at most 64 edits)
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' || len(edits) > 64 {
		return dst, errSyntax
	}
	i++
	last := 0 // b[last:] not yet copied
	members := 0
	for {
		i = skipSpace(b, i)
		if i >= len(b) {
			return dst, errSyntax
		}
		if b[i] == '}' {
			break
		}
		if b[i] == ',' {
			i++
			continue
		}
		if b[i] != '"' {
			return dst, errSyntax
		}
		ke, err := skipString(b, i)
		if err != nil {
			return dst, err
		}
		key := b[i:ke]
		i = skipSpace(b, ke)
		if i >= len(b) || b[i] != ':' {
			return dst, errSyntax
		}
		i = skipSpace(b, i+1)
		vs := i
		ve, err := skipValue(b, i)
		if err != nil {
			return dst, err
		}
		members++
		for j := range edits {
			if done&(1<<j) == 0 && keyEquals(key, edits[j].Key) {
				dst = append(dst, b[last:vs]...)
				dst = append(dst, edits[j].Value...)
				last = ve
				done |= 1 << j
				break
			}
		}
		i = ve
	}
	end := i // the closing brace
	dst = append(dst, b[last:end]...)
	for j := range edits {
		if done&(1<<j) != 0 {
			continue
		}
		if members > 0 {
			dst = append(dst, ',')
		}
		members++
		dst = AppendString(dst, edits[j].Key)
		dst = append(dst, ':')
		dst = append(dst, edits[j].Value...)
	}
	return append(dst, b[end:]...), nil
}

// Set returns b with the value of top-level key replaced by value (raw JSON), or with
// "key":value added at the end of the object when the key is absent. The result is
// appended to dst[:0]'s storage; b is not modified. b must be a JSON object.
func Set(dst, b []byte, key string, value []byte) ([]byte, error) {
	dst = dst[:0]
	if s, e, ok := Find(b, key); ok {
		dst = append(dst, b[:s]...)
		dst = append(dst, value...)
		return append(dst, b[e:]...), nil
	}
	end := len(b) - 1
	for end >= 0 && isSpace(b[end]) {
		end--
	}
	if end < 0 || b[end] != '}' {
		return dst, errSyntax
	}
	// Is the object empty?
	j := end - 1
	for j >= 0 && isSpace(b[j]) {
		j--
	}
	dst = append(dst, b[:end]...)
	if j >= 0 && b[j] != '{' {
		dst = append(dst, ',')
	}
	dst = AppendString(dst, key)
	dst = append(dst, ':')
	dst = append(dst, value...)
	return append(dst, b[end:]...), nil
}

// Delete returns b without top-level key (all occurrences), appended to dst[:0].
func Delete(dst, b []byte, key string) []byte {
	dst = dst[:0]
	for {
		s, _, ok := Find(b, key)
		if !ok {
			return append(dst, b...)
		}
		// Find the key start: walk back from the value over ':' and the key string.
		ks, ve, ok := memberRange(b, s)
		if !ok {
			return append(dst, b...)
		}
		// Remove one neighbouring comma.
		i := skipSpace(b, ve)
		if i < len(b) && b[i] == ',' {
			ve = i + 1
		} else {
			j := ks - 1
			for j >= 0 && isSpace(b[j]) {
				j--
			}
			if j >= 0 && b[j] == ',' {
				ks = j
			}
		}
		nb := make([]byte, 0, len(b))
		nb = append(nb, b[:ks]...)
		nb = append(nb, b[ve:]...)
		b = nb
	}
}

// memberRange returns [keyStart, valueEnd) of the member whose value starts at vs.
func memberRange(b []byte, vs int) (int, int, bool) {
	ve, err := skipValue(b, vs)
	if err != nil {
		return 0, 0, false
	}
	// Rescan from the start to find the key preceding vs (keys may contain ':').
	i := skipSpace(b, 0) + 1
	for i < len(b) {
		i = skipSpace(b, i)
		if i < len(b) && b[i] == ',' {
			i++
			continue
		}
		ks := i
		ke, err := skipString(b, i)
		if err != nil {
			return 0, 0, false
		}
		i = skipSpace(b, ke)
		i = skipSpace(b, i+1)
		if i == vs {
			return ks, ve, true
		}
		e, err := skipValue(b, i)
		if err != nil {
			return 0, 0, false
		}
		i = e
	}
	return 0, 0, false
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipString returns the index just past the string token starting at b[i] == '"'.
// It jumps from quote to quote (bytes.IndexByte is vectorised); a quote is escaped when
// an odd number of backslashes precede it.
func skipString(b []byte, i int) (int, error) {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, errSyntax
		}
		q := i + j
		n := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return q + 1, nil
		}
		i = q + 1
	}
}

// skipValue returns the index just past the JSON value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				e, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = e
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, errSyntax
	default:
		s := i
		for i < len(b) {
			c := b[i]
			if c == ',' || c == '}' || c == ']' || isSpace(c) {
				break
			}
			i++
		}
		if i == s {
			return 0, errSyntax
		}
		return i, nil
	}
}

// AppendString appends s as a JSON string literal.
func AppendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				const hex = "0123456789abcdef"
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', byte('8'+r-'\u2028'))
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
