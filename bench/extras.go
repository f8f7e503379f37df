package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/rueidis"
	"github.com/valyala/fasthttp"

	"github.com/sessiond/sessiond/audit"
	"github.com/sessiond/sessiond/internal/keys"
	"github.com/sessiond/sessiond/internal/redistest"
	"github.com/sessiond/sessiond/sessions"
)

// The measurements that need no comparison, and the helpers they share with
// -scale.

// propagation signs in n sessions (of the bench's first users, over HTTP,
// through replica B: the loaded replica A's clock may be ahead, and the
// tokens it issues then too), warms replica B's cache with each, signs it
// out through replica A and polls B until it refuses the token: the time
// from A's 204 to B's first 401.
func propagation(addrs [2]string, n, users int) ([]time.Duration, error) {
	b := &fasthttp.HostClient{Addr: addrs[1], MaxConns: 4}
	get := func(tok string) int {
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(res)
		req.SetRequestURI("http://" + addrs[1] + "/v1/me")
		req.Header.Set("Authorization", "Bearer "+tok)
		if err := b.Do(req, res); err != nil {
			return 0
		}
		return res.StatusCode()
	}
	out := make([]time.Duration, 0, n)
	for i := range n {
		tok, err := login(addrs[1], fmt.Sprintf("bench%d", i%min(users, 10)))
		if err != nil {
			return nil, err
		}
		for range 2 {
			if code := get(tok); code != 200 {
				return nil, fmt.Errorf("replica B before the revocation: %d", code)
			}
		}
		req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + addrs[0] + "/v1/auth/logout")
		req.Header.SetMethod("POST")
		req.Header.Set("Authorization", "Bearer "+tok)
		err = fasthttp.Do(req, res)
		code := res.StatusCode()
		fasthttp.ReleaseRequest(req)
		fasthttp.ReleaseResponse(res)
		if err != nil || code != 204 {
			return nil, fmt.Errorf("logout through A: %d %v", code, err)
		}
		acked := time.Now()
		for get(tok) != 401 {
			if time.Since(acked) > 5*time.Second {
				return nil, errors.New("replica B still accepts a token 5s after its revocation")
			}
		}
		out = append(out, time.Since(acked))
	}
	slices.Sort(out)
	return out, nil
}

// memoryPerSession creates n sessions over n/50 users and returns Redis's
// used_memory growth per session.
func memoryPerSession(ctx context.Context, rs *redistest.Server, mk *maker, n int) (float64, string, error) {
	c, st, layout := mk.c, mk.srv.Sessions, mk.layout
	nUsers := max(n/50, 1)
	uids := make([]string, nUsers)
	for i := range uids {
		uids[i] = uuid.NewString()
		if err := addAccount(ctx, c, layout, uids[i]); err != nil {
			return 0, "", err
		}
	}
	before, err := usedMemory(ctx, rs)
	if err != nil {
		return 0, "", err
	}
	var firstKey string
	err = parallel(n, 32, func(i int) error {
		uid := uids[i%nUsers]
		s, err := st.Create(ctx, uid, "0", sessions.Meta{DeviceName: "Alice's iPhone", Platform: "ios",
			UserAgent: "MyApp/3.2 (iPhone; iOS 18.1)", IP: "203.0.113.7"})
		if i == 0 {
			firstKey = layout.Session(uid, s.ID)
		}
		return err
	})
	if err != nil {
		return 0, "", err
	}
	after, err := usedMemory(ctx, rs)
	if err != nil {
		return 0, "", err
	}
	enc, _ := c.Do(ctx, c.B().ObjectEncoding().Key(firstKey).Build()).ToString()
	return float64(after-before) / float64(n), enc, nil
}

// usedMemory sums used_memory over the masters (the one node, or a cluster's).
func usedMemory(ctx context.Context, rs *redistest.Server) (int64, error) {
	c, err := rueidis.NewClient(rs.Options())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	var total int64
	for _, node := range c.Nodes() {
		role, err := node.Do(ctx, node.B().Role().Build()).ToArray()
		if err != nil {
			return 0, err
		}
		if r, _ := role[0].ToString(); r != "master" {
			continue
		}
		info, err := node.Do(ctx, node.B().Info().Section("memory").Build()).ToString()
		if err != nil {
			return 0, err
		}
		for _, line := range strings.Split(info, "\r\n") {
			if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total, nil
}

// timeLogoutAll gives one user n sessions and times RevokeAll of them.
func timeLogoutAll(ctx context.Context, mk *maker, n int) (time.Duration, error) {
	c, st, layout := mk.c, mk.srv.Sessions, mk.layout
	uid := uuid.NewString()
	if err := addAccount(ctx, c, layout, uid); err != nil {
		return 0, err
	}
	if err := parallel(n, 32, func(int) error {
		_, err := st.Create(ctx, uid, "0", sessions.Meta{DeviceName: "device"})
		return err
	}); err != nil {
		return 0, err
	}
	start := time.Now()
	revoked, err := st.RevokeAll(ctx, uid, "", audit.Actor{})
	took := time.Since(start)
	if err != nil {
		return 0, err
	}
	if revoked != n {
		return 0, fmt.Errorf("logout-all revoked %d of %d", revoked, n)
	}
	return took, nil
}

// addAccount writes a bare enabled account record, without the bcrypt work
// of a real one: sessions only need it to exist.
func addAccount(ctx context.Context, c rueidis.Client, layout keys.Layout, uid string) error {
	return c.Do(ctx, c.B().Hset().Key(layout.User(uid)).FieldValue().
		FieldValue(keys.UserID, uid).FieldValue(keys.UserRole, keys.DefaultRole).
		FieldValue(keys.UserVersion, "0").FieldValue(keys.UserDisabled, "0").Build()).Error()
}

// parallel runs f(0..n-1) on w goroutines and returns the first error.
func parallel(n, w int, f func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range w {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if err := f(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

// login signs name in over HTTP and returns its token.
func login(addr, name string) (string, error) {
	req, res := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(res)
	req.SetRequestURI("http://" + addr + "/v1/auth/login")
	req.Header.SetMethod("POST")
	req.Header.SetContentType("application/json")
	req.SetBodyString(fmt.Sprintf(`{"username":%q,"password":"bench-password"}`, name))
	if err := fasthttp.DoTimeout(req, res, 10*time.Second); err != nil {
		return "", err
	}
	if res.StatusCode() != 201 {
		return "", fmt.Errorf("login %s: %d %s", name, res.StatusCode(), res.Body())
	}
	var m struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(res.Body(), &m); err != nil {
		return "", err
	}
	return m.Token, nil
}
