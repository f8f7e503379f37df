package tokens_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/sessiond/sessiond/tokens"
)

// The verification sessiond had before it decoded the claims once: golang-jwt's
// parser, with the claims' JSON types checked in a map first and the claims
// then decoded again into the struct. Kept here as the reference the
// one-pass decoder must agree with.

type refClaims struct {
	jwt.RegisteredClaims
	Username         string           `json:"preferred_username"`
	AccountCreatedAt *jwt.NumericDate `json:"account_created_at"`
}

var refTypes = map[string]string{
	"iss": "string", "sub": "string", "jti": "string", "preferred_username": "string",
	"exp": "number", "iat": "number", "nbf": "number", "account_created_at": "number",
	"aud": "audience",
}

func (tc *refClaims) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	for name, v := range raw {
		want, known := refTypes[name]
		if !known {
			continue
		}
		if got := refJSONType(v); got != want && (want != "audience" || (got != "string" && !refStringArray(v))) {
			return fmt.Errorf("claim %q: want a JSON %s", name, want)
		}
	}
	type plain refClaims
	return json.Unmarshal(b, (*plain)(tc))
}

func refJSONType(v json.RawMessage) string {
	v = bytes.TrimSpace(v)
	switch {
	case len(v) == 0:
		return ""
	case v[0] == '"':
		return "string"
	case v[0] == '-' || (v[0] >= '0' && v[0] <= '9'):
		return "number"
	}
	return "other"
}

func refStringArray(v json.RawMessage) bool {
	var ss []string
	return json.Unmarshal(v, &ss) == nil && bytes.HasPrefix(bytes.TrimSpace(v), []byte("["))
}

// refVerify is the old Tokens.Verify for one HMAC secret.
func refVerify(secret []byte, kid, issuer, audience, token string) (tokens.Claims, error) {
	p := jwt.NewParser(
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg(), jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithIssuer(issuer), jwt.WithAudience(audience), jwt.WithExpirationRequired(), jwt.WithIssuedAt(),
		jwt.WithLeeway(tokens.ClockSkew), jwt.WithStrictDecoding())
	var tc refClaims
	_, err := p.ParseWithClaims(token, &tc, func(tok *jwt.Token) (any, error) {
		if _, ok := tok.Header["crit"]; ok {
			return nil, errors.New("crit")
		}
		if k, _ := tok.Header["kid"].(string); k != kid {
			return nil, errors.New("kid")
		}
		if tok.Method.Alg() != "HS256" {
			return nil, errors.New("alg")
		}
		return secret, nil
	})
	if err != nil {
		return tokens.Claims{}, err
	}
	if tc.Subject == "" || tc.ID == "" || tc.IssuedAt == nil || tc.Username == "" || tc.AccountCreatedAt == nil {
		return tokens.Claims{}, errors.New("missing")
	}
	return tokens.Claims{UserID: tc.Subject, SessionID: tc.ID, IssuedAt: tc.IssuedAt.Time, ExpiresAt: tc.ExpiresAt.Time,
		Username: tc.Username, AccountCreatedAt: tc.AccountCreatedAt.Time}, nil
}

// signerKID is the kid tk signs with.
func signerKID(tb testing.TB, tk *tokens.Tokens) string {
	tb.Helper()
	now := time.Now()
	tok, err := tk.Sign(tokens.Claims{SessionID: "s", UserID: "u", IssuedAt: now, ExpiresAt: now.Add(time.Hour),
		Username: "u", AccountCreatedAt: now})
	if err != nil {
		tb.Fatal(err)
	}
	head, _ := base64.RawURLEncoding.DecodeString(strings.Split(tok, ".")[0])
	var h struct{ Kid string }
	if err := json.Unmarshal(head, &h); err != nil || h.Kid == "" {
		tb.Fatalf("header %s: %v", head, err)
	}
	return h.Kid
}

// hsToken signs any header and claims bytes with secret, as a JWT.
func hsToken(secret []byte, header, claims string) string {
	enc := base64.RawURLEncoding
	signed := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(claims))
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(signed))
	return signed + "." + enc.EncodeToString(m.Sum(nil))
}

// knownClaims are the names the decoder reads.
var knownClaims = []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "preferred_username", "account_created_at"}

// lenientInReference says why the old decoder may accept a token the new
// one refuses, or read it differently: alg or kid named twice in the header,
// a known claim named twice (it took the last; RFC 7519 §4 allows refusing),
// or a claim under another case ("EXP", which encoding/json matched to exp
// without its type checked). "" when none.
func lenientInReference(header, claims string) string {
	if why := duplicateOrFolded(header, []string{"alg", "kid"}, false); why != "" {
		return why
	}
	return duplicateOrFolded(claims, knownClaims, true)
}

// duplicateOrFolded finds a name of names twice among the members of the
// JSON object s, or (with folded) a member that is one of them in another
// case.
func duplicateOrFolded(s string, names []string, folded bool) string {
	d := json.NewDecoder(strings.NewReader(s))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return ""
	}
	seen := map[string]bool{}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return ""
		}
		name, _ := tok.(string)
		for _, k := range names {
			switch {
			case name == k && seen[k]:
				return "duplicate " + k
			case name == k:
				seen[k] = true
			case folded && strings.EqualFold(name, k):
				return "case-folded " + name
			}
		}
		var skip json.RawMessage
		if d.Decode(&skip) != nil {
			return ""
		}
	}
	return ""
}

// The one-pass decoder agrees with the one it replaced: for any header
// and claims, signed with the right key (so the fuzzer gets past the
// signature to the decoder), both refuse, or both accept with the same
// claims; they may differ where lenientInReference says, and nowhere else.
func FuzzVerifyMatchesReference(f *testing.F) {
	tk, err := tokens.New(tokens.Keyring{Secret: secret}, "sessiond", "sessiond", tokens.WithCache(1<<20))
	if err != nil {
		f.Fatal(err)
	}
	kid := signerKID(f, tk)
	hdr := `{"alg":"HS256","kid":"` + kid + `","typ":"JWT"}`
	good := `{"iss":"sessiond","aud":["sessiond"],"sub":"uid","jti":"sid","iat":1767225600,"exp":4070908800,` +
		`"preferred_username":"alice","account_created_at":1767225600}`
	for _, seed := range [][2]string{
		{hdr, good},
		{`{"alg":"HS256","kid":"` + kid + `"}`, strings.Replace(good, `["sessiond"]`, `"sessiond"`, 1)},
		{`{"kid":"` + kid + `","alg":"HS256"}`, strings.Replace(good, `"iss"`, `"\u0069ss"`, 1)},
		{`{"\u0061lg":"HS256","kid":"` + kid + `"}`, good},
		{`{"alg":"HS256","kid":"` + kid + `","crit":["x"]}`, good},
		{`{"alg":"none","kid":"` + kid + `"}`, good},
		{`{"alg":"HS256","alg":"HS256","kid":"` + kid + `"}`, good},
		{`{"alg":7,"kid":"` + kid + `"}`, good},
		{`[]`, good},
		{`null`, good},
		{hdr, `null`},
		{hdr, `[1]`},
		{hdr, ` { "iss" : "sessiond" , "aud":"sessiond","sub":"uid","jti":"sid","iat":1.7672256e9,"exp":4.0709088e9,"preferred_username":"al\"ice\u00e9","account_created_at":1767225600.5 } `},
		{hdr, strings.Replace(good, `"exp":4070908800`, `"exp":"4070908800"`, 1)},
		{hdr, strings.Replace(good, `"exp":4070908800`, `"exp":null`, 1)},
		{hdr, strings.Replace(good, `"exp":4070908800`, `"exp":1e400`, 1)},
		{hdr, strings.Replace(good, `"exp":4070908800`, `"exp":4070908800,"exp":1`, 1)},
		{hdr, strings.Replace(good, `"exp":4070908800`, `"EXP":"1",`+`"exp":4070908800`, 1)},
		{hdr, strings.Replace(good, `["sessiond"]`, `["other","sessiond"]`, 1)},
		{hdr, strings.Replace(good, `["sessiond"]`, `[]`, 1)},
		{hdr, strings.Replace(good, `["sessiond"]`, `[""]`, 1)},
		{hdr, strings.Replace(good, `["sessiond"]`, `[null]`, 1)},
		{hdr, strings.Replace(good, `["sessiond"]`, `["sessiond",1]`, 1)},
		{hdr, strings.Replace(good, `"sub":"uid"`, `"sub":"u\ud800id"`, 1)},
		{hdr, strings.Replace(good, `"sub":"uid"`, "\"sub\":\"u\xffid\"", 1)},
		{hdr, strings.Replace(good, `"sub":"uid"`, `"sub":"uid","x":{"a":[1,{"b":"]}"}],"c":null},"y":[true,false]`, 1)},
		{hdr, strings.Replace(good, `"sub":"uid"`, `"sub":""`, 1)},
		{hdr, strings.Replace(good, `"iat":1767225600`, `"iat":4070908800`, 1)},
		{hdr, strings.Replace(good, `"iat":1767225600`, `"nbf":4070908800,"iat":1767225600`, 1)},
		{hdr, strings.Replace(good, `"iss":"sessiond"`, `"iss":"evil"`, 1)},
		{hdr, good + "x"},
	} {
		f.Add(seed[0], seed[1])
	}
	now := time.Now()
	f.Fuzz(func(t *testing.T, header, claims string) {
		token := hsToken(secret, header, claims)
		want, wantErr := refVerify(secret, kid, "sessiond", "sessiond", token)
		// Twice: the second answer may come from the cache.
		for range 2 {
			got, err := tk.VerifyAt(token, now)
			if err != nil && !errors.Is(err, tokens.ErrInvalidToken) {
				t.Fatalf("error %v is not ErrInvalidToken", err)
			}
			if (err == nil) == (wantErr == nil) && got == want {
				continue
			}
			if lenientInReference(header, claims) == "" && !nearNow(claims, now) {
				t.Fatalf("got %+v (err %v), the reference %+v (err %v)", got, err, want, wantErr)
			}
		}
	})
}

// nearNow: a time claim within a minute of now, where the reference's clock
// (its own time.Now) and ours may disagree.
func nearNow(claims string, now time.Time) bool {
	var m map[string]any
	_ = json.Unmarshal([]byte(claims), &m)
	for _, v := range m {
		if f, ok := v.(float64); ok && f > float64(now.Unix()-60-5) && f < float64(now.Unix()+60+5) {
			return true
		}
	}
	return false
}
