package server

import (
	"fmt"
	"net/url"
	"strings"
	"time"
)

// loadRefresh reads the refresh-token settings: ACCESS_TOKEN_TTL (unset:
// one token per sign-in, as without refresh tokens), REFRESH_REUSE_GRACE
// and PUBLIC_URL.
func (c *Config) loadRefresh(getenv func(string) string) error {
	p := parser{getenv: getenv}
	if getenv("ACCESS_TOKEN_TTL") != "" {
		// Shorter would make clients refresh more than they use the token.
		c.AccessTokenTTL = p.durationAtLeast("ACCESS_TOKEN_TTL", 0, 10*time.Second)
		if p.err == nil && c.AccessTokenTTL > c.MaxLifetime {
			return &ConfigError{"ACCESS_TOKEN_TTL", fmt.Sprintf("must be at most SESSION_MAX_LIFETIME (%s), got %s", c.MaxLifetime, c.AccessTokenTTL)}
		}
	}
	c.RefreshReuseGrace = p.durationAtLeast("REFRESH_REUSE_GRACE", 30*time.Second, 0)
	if p.err == nil && c.RefreshReuseGrace > 5*time.Minute {
		// A spent token that still works for long is a stolen token that does.
		return &ConfigError{"REFRESH_REUSE_GRACE", fmt.Sprintf("must be at most 5m, got %s", c.RefreshReuseGrace)}
	}
	if v := getenv("PUBLIC_URL"); v != "" {
		u, err := url.Parse(v)
		switch {
		case err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Opaque != "":
			p.fail("PUBLIC_URL", fmt.Sprintf("want an absolute http or https URL such as https://auth.example.com, got %q", v))
		case u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(v, "#"):
			p.fail("PUBLIC_URL", fmt.Sprintf("want a base URL without query or fragment, got %q", v))
		case u.User != nil:
			p.fail("PUBLIC_URL", "want a base URL without user or password")
		default:
			c.PublicURL = strings.TrimSuffix(u.String(), "/")
		}
	}
	return p.err
}
