package uagent_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/sessiond/sessiond/internal/uagent"
)

// Real browsers' and apps' headers, as the console shows them.
func TestParse(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		ua, platform, label string
		kind                uagent.Kind
	}{
		{"Mozilla/5.0 (iPhone; CPU iPhone OS 18_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.5 Mobile/15E148 Safari/604.1", "", "Safari on iPhone", uagent.Phone},
		{"Mozilla/5.0 (Linux; Android 15; Pixel 8 Pro) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/137.0.0.0 Mobile Safari/537.36", "", "Chrome on Pixel 8 Pro", uagent.Phone},
		{"Mozilla/5.0 (iPad; CPU OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1", "", "Safari on iPad", uagent.Tablet},
		{"Mozilla/5.0 (Linux; Android 14; SM-X710) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36", "", "Chrome on Android", uagent.Tablet},
		{"Mozilla/5.0 (Linux; Android 12; BRAVIA 4K VH2 Build/STT2.230405.002; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/114.0.5735.196 Mobile Safari/537.36", "", "App on Android", uagent.TV},
		{"Mozilla/5.0 (Linux; Android 11; SMART TV Build/RP1A) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120 Safari/537.36", "", "Android", uagent.TV},
		{"AppleCoreMedia/1.0.0.20L563 (Apple TV; U; CPU OS 16_5 like Mac OS X; en_us)", "", "Apple TV", uagent.TV},
		{"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "", "Firefox on Linux", uagent.Computer},
		{"Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "", "Safari on macOS", uagent.Computer},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/137.0.0.0 Safari/537.36", "", "Chrome on Windows", uagent.Computer},
		{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/137.0.0.0 Safari/537.36 Edg/137.0.0.0", "", "Edge on Windows", uagent.Computer},
		{"AliceApp/4.1 (iPhone; iOS 18.5)", "ios", "App on iPhone", uagent.Phone},
		{"curl/8.5.0", "", "curl", uagent.Unknown},
		{"", "android", "", uagent.Phone},
		{"", "", "", uagent.Unknown},
		{"Firefox/140", "tv", "", uagent.TV},
		{"<script>alert(1)</script>", "web", "", uagent.Computer},
	} {
		got := uagent.Parse(c.ua, c.platform)
		if got.Label() != c.label || got.Kind != c.kind {
			t.Errorf("Parse(%q, %q) = %+v: label %q, kind %s; want %q, %s", c.ua, c.platform, got, got.Label(), got.Kind, c.label, c.kind)
		}
	}
}

// Parsing is safe from many requests at once, and the cache stays bounded
// however many distinct headers come.
func TestParseConcurrentAndBounded(t *testing.T) {
	t.Parallel()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range uagent.CacheSize {
				ua := fmt.Sprintf("Mozilla/5.0 (X11; Linux x86_64; rv:%d.%d) Gecko/20100101 Firefox/%d.0", g, i, i)
				if got := uagent.Parse(ua, "").Label(); !strings.HasPrefix(got, "Firefox on Linux") {
					t.Errorf("Parse(%q) = %q", ua, got)
					return
				}
			}
		})
	}
	wg.Wait()
}
