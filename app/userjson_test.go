package app

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"
)

// GET /v1/me's body is byte for byte what encoding/json writes of a
// userJSON, for any strings and times.
func FuzzUserJSONAsEncodingJSON(f *testing.F) {
	for _, s := range []string{"alice", "alice@example.com", "", `a"b`, `a\b`, "<script>&", "é", "\u2028", "\xff", "a\nb\x01", "\x7f"} {
		f.Add("7f1c7a2e-1111-4222-8333-444444444444", s, "admin", true, int64(1767225600))
	}
	f.Fuzz(func(t *testing.T, id, username, role string, disabled bool, created int64) {
		at := time.Unix(created%(1<<40), 0)
		want, err := json.Marshal(userJSON{ID: id, Username: username, Role: role, Disabled: disabled, CreatedAt: rfc3339(at)})
		if err != nil {
			t.Skip(err)
		}
		if got := appendUserJSON(nil, id, username, role, disabled, at); string(got) != string(want) {
			t.Fatalf("got  %s\nwant %s", got, want)
		}
	})
}

// The same over many random strings: every byte value, and runes of every
// class (HTML characters, U+2028, invalid UTF-8).
func TestUserJSONAsEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pick := []string{"a", "Z", "0", "@", ".", "+", "-", "_", `"`, `\`, "<", ">", "&", "\n", "\t", "\x00", "\x1f", "\x7f", "\x80", "\xff",
		"é", "€", "\u2028", "\u2029", "\U0001F600", "\xed\xa0\x80"}
	for range 20000 {
		var s []byte
		for range r.IntN(12) {
			if r.IntN(3) == 0 {
				s = append(s, byte(r.IntN(256)))
			} else {
				s = append(s, pick[r.IntN(len(pick))]...)
			}
		}
		at := time.Unix(r.Int64N(1<<36)-1<<35, 0)
		want, _ := json.Marshal(userJSON{ID: string(s), Username: string(s) + "x", Role: "user", CreatedAt: rfc3339(at)})
		if got := appendUserJSON(nil, string(s), string(s)+"x", "user", false, at); string(got) != string(want) {
			t.Fatalf("%q: got  %s\nwant %s", s, got, want)
		}
	}
}
