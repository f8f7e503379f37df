// Package uagent names a device for people from its User-Agent header:
// "Safari on iPhone", "Chrome on Windows", and what kind of device it is
// (a phone, a tablet, a TV, a computer), for the console's device list.
//
// The parsing is ua-parser's (github.com/ua-parser/uap-go with its embedded
// regexes, the ones Google-scale services keep current), not matching of our
// own; this package only words its answer. The parser runs hundreds of
// regular expressions per header, so each distinct header is parsed once and
// the answer kept in a small bounded cache; the parser itself is built on
// first use, so a process that never shows a device list never compiles it.
package uagent

import (
	"strings"
	"sync"

	lru "github.com/hashicorp/golang-lru"
	"github.com/ua-parser/uap-go/uaparser"
)

// Kind is what sort of device a user agent runs on.
type Kind string

// The kinds, each with its icon in the console.
const (
	Phone    Kind = "phone"
	Tablet   Kind = "tablet"
	TV       Kind = "tv"
	Computer Kind = "computer"
	Unknown  Kind = "unknown"
)

// Info is what a user agent says, in words.
type Info struct {
	// Browser is the browser or client, without a version: "Safari",
	// "Chrome", "Firefox"; "" when the parser does not know it.
	Browser string
	// OS is the operating system: "iOS", "Android", "macOS"; "" when unknown.
	OS string
	// Device is the device's model when the header names one ("iPhone",
	// "Pixel 8 Pro"), else "".
	Device string
	Kind   Kind
}

// Label is the user agent in a few words: "Safari on iPhone", "Firefox on
// Linux", "Chrome", "iPhone"; "" when nothing is known.
func (i Info) Label() string {
	on := i.Device
	if on == "" {
		on = i.OS
	}
	switch {
	case i.Browser == on:
		// Android's own browser on Android: once is enough.
		return on
	case i.Browser != "" && on != "":
		return i.Browser + " on " + on
	case i.Browser != "":
		return i.Browser
	}
	return on
}

// CacheSize bounds the answers kept: far more distinct headers than one
// account's device list shows, and a few hundred KiB at most.
const CacheSize = 512

var (
	parser = sync.OnceValue(func() *uaparser.Parser {
		// The parser's own per-part caches are kept minimal: the answers
		// are cached here, whole.
		p, err := uaparser.New(uaparser.WithCacheSize(1))
		if err != nil {
			panic("uagent: the embedded regexes do not load: " + err.Error())
		}
		return p
	})
	cache = sync.OnceValue(func() *lru.Cache {
		c, err := lru.New(CacheSize)
		if err != nil {
			panic(err)
		}
		return c
	})
)

// Parse describes a User-Agent header. platform, the client's own word for
// its platform at sign-in ("ios", "android", "tv", "web"…), decides the kind
// when the header does not.
func Parse(ua, platform string) Info {
	var i Info
	if ua != "" {
		if v, ok := cache().Get(ua); ok {
			i = v.(Info)
		} else {
			i = describe(parser().Parse(ua))
			cache().Add(ua, i)
		}
	}
	if i.Kind == Unknown || i.Kind == "" {
		i.Kind = platformKind(platform)
	}
	return i
}

// browserNames shorten the parser's families to what people call them.
var browserNames = map[string]string{
	"Mobile Safari":              "Safari",
	"Mobile Safari UI/WKWebView": "App",
	"Chrome Mobile":              "Chrome",
	"Chrome Mobile iOS":          "Chrome",
	"Chrome Mobile WebView":      "App",
	"Firefox Mobile":             "Firefox",
	"Firefox iOS":                "Firefox",
	"Edge Mobile":                "Edge",
	"HeadlessChrome":             "Headless Chrome",
	"Samsung Internet":           "Samsung Internet",
}

// osNames are the parser's OS families as their makers name them now.
var osNames = map[string]string{
	"Mac OS X":         "macOS",
	"ATV OS X":         "tvOS",
	"Chromecast Linux": "Chromecast",
}

func describe(c *uaparser.Client) Info {
	var i Info
	if c.UserAgent != nil && c.UserAgent.Family != "Other" {
		i.Browser = c.UserAgent.Family
		if n, ok := browserNames[i.Browser]; ok {
			i.Browser = n
		}
	}
	if c.Os != nil && c.Os.Family != "Other" {
		i.OS = c.Os.Family
		if n, ok := osNames[i.OS]; ok {
			i.OS = n
		}
	}
	var brand, family string
	if c.Device != nil {
		brand, family = c.Device.Brand, c.Device.Family
	}
	// A device the parser names by maker and model ("Apple" "iPhone",
	// "Google" "Pixel 8 Pro"); its generic classes ("Generic_Android")
	// and a Mac (the OS says more) are no model to show.
	if brand != "" && !strings.HasPrefix(brand, "Generic") && family != "Other" && family != "Mac" && family != "Spider" {
		i.Device = family
		if family == "AppleTV" {
			i.Device = "Apple TV"
		}
	}
	i.Kind = kindOf(i.OS, brand, family)
	return i
}

// kindOf classifies a device from the parser's answer: its device classes
// (Generic_Android_Tablet, Generic_Inettv, Generic_Smartphone), its models,
// its OS.
func kindOf(os, brand, family string) Kind {
	lower := " " + strings.ToLower(family) + " "
	switch {
	case family == "Spider":
		return Unknown
	case brand == "Generic_Inettv", family == "AppleTV", os == "tvOS", os == "Chromecast",
		strings.Contains(lower, " tv "), strings.Contains(lower, "bravia"), strings.HasPrefix(family, "AFT"):
		// The parser files TVs' Android builds under tablets and generic
		// Android; their model names say TV (SMART TV, BRAVIA, Fire TV's AFT).
		return TV
	case family == "iPad", brand == "Generic_Android_Tablet", strings.Contains(lower, "tablet"), strings.Contains(lower, "kindle"):
		return Tablet
	case family == "iPhone", family == "iPod", brand == "Generic_Smartphone", brand == "Generic_Feature Phone",
		os == "Android", os == "iOS":
		return Phone
	}
	switch os {
	case "Windows", "macOS", "Linux", "Ubuntu", "Fedora", "Debian", "Chrome OS", "FreeBSD", "OpenBSD", "NetBSD":
		return Computer
	}
	return Unknown
}

// platformKind is the kind a sign-in's platform names, if any.
func platformKind(platform string) Kind {
	switch p := strings.ToLower(platform); {
	case p == "ios" || p == "android" || p == "iphone" || p == "phone" || p == "mobile":
		return Phone
	case p == "ipados" || p == "tablet" || p == "ipad":
		return Tablet
	case strings.Contains(p, "tv"):
		return TV
	case p == "web" || p == "macos" || p == "windows" || p == "linux" || p == "desktop" || p == "chromeos":
		return Computer
	}
	return Unknown
}
