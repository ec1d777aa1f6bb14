package proxy

import "encoding/json"

// idMembers is what json.Unmarshal of the JSON object body (which
// json.Valid accepted) into a map[string]json.RawMessage gives for the
// advertiser_id and advertiser_ids members, the last of each winning,
// without copying every other member's value: a 4 KiB body is read by
// hand, not decoded. ok is false when a member's name has an escape, which
// only the decoder reads right; FuzzIDMembers checks the two agree.
func idMembers(body []byte) (members map[string]json.RawMessage, ok bool) {
	i := skipJSONSpace(body, 1) // past '{'
	for body[i] != '}' {
		end := i + 1
		for body[end] != '"' {
			if body[end] == '\\' {
				return nil, false
			}
			end++
		}
		name := body[i+1 : end]
		i = skipJSONSpace(body, skipJSONSpace(body, end+1)+1) // past ':'
		vend := valueEnd(body, i)
		if n := string(name); n == "advertiser_id" || n == "advertiser_ids" {
			if members == nil {
				members = map[string]json.RawMessage{}
			}
			members[n] = body[i:vend]
		}
		if i = skipJSONSpace(body, vend); body[i] == ',' {
			i = skipJSONSpace(body, i+1)
		}
	}
	return members, true
}

// skipJSONSpace returns the index of the first byte from i on that is not
// JSON whitespace.
func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the index just past the JSON value starting at b[i],
// in valid JSON.
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		for j := i + 1; ; j++ {
			switch b[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
	case '{', '[':
		depth := 0
		for j := i; ; j++ {
			switch b[j] {
			case '"':
				j = valueEnd(b, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return j + 1
				}
			}
		}
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	return j
}
