package analysis

import (
	"context"
	"sync"
	"time"

	"moat/internal/defaults"
	"moat/policy/content"
)

// Options bounds the work done on one message. Zero fields take the
// documented defaults (DefaultOptions).
type Options struct {
	MaxParts       int           // MIME parts visited; default 1000
	MaxDepth       int           // multipart / message nesting; default 32
	MaxPartBytes   int           // decoded bytes kept per part; default 8 MiB
	MaxHTMLBytes   int           // HTML bytes tokenised per part; default 512 KiB
	MaxTextBytes   int           // visible text kept (all parts); default 256 KiB
	MaxURLs        int           // URLs kept in URLFacts.List (counting goes on); default 1000
	MaxURLScan     int           // URL candidates examined in all; default 100000
	MaxZipMembers  int           // zip member names listed per archive; default 1000
	MaxDateAge     time.Duration // a Date older than this is "past"; default 365 days
	MaxDateFuture  time.Duration // a Date further ahead than this is "future"; default 24h
	ReceivedSkew   time.Duration // slack before Received dates count as out of order; default 2h
	ImageOnlyWords int           // at most this many visible words with an image is "image only"; default 25
}

// DefaultOptions returns the defaults documented on Options.
func DefaultOptions() Options {
	return Options{
		MaxParts:       1000,
		MaxDepth:       32,
		MaxPartBytes:   8 << 20,
		MaxHTMLBytes:   512 << 10,
		MaxTextBytes:   256 << 10,
		MaxURLs:        1000,
		MaxURLScan:     100000,
		MaxZipMembers:  1000,
		MaxDateAge:     365 * 24 * time.Hour,
		MaxDateFuture:  24 * time.Hour,
		ReceivedSkew:   2 * time.Hour,
		ImageOnlyWords: 25,
	}
}

func (o Options) withDefaults() Options {
	d := DefaultOptions()
	defaults.Positive(&o.MaxParts, d.MaxParts)
	defaults.Positive(&o.MaxDepth, d.MaxDepth)
	defaults.Positive(&o.MaxPartBytes, d.MaxPartBytes)
	defaults.Positive(&o.MaxHTMLBytes, d.MaxHTMLBytes)
	defaults.Positive(&o.MaxTextBytes, d.MaxTextBytes)
	defaults.Positive(&o.MaxURLs, d.MaxURLs)
	defaults.Positive(&o.MaxURLScan, d.MaxURLScan)
	defaults.Positive(&o.MaxZipMembers, d.MaxZipMembers)
	defaults.Positive(&o.ImageOnlyWords, d.ImageOnlyWords)
	defaults.Positive(&o.MaxDateAge, d.MaxDateAge)
	defaults.Positive(&o.MaxDateFuture, d.MaxDateFuture)
	defaults.Positive(&o.ReceivedSkew, d.ReceivedSkew)
	return o
}

// Input is what the analysis knows besides the message itself.
type Input struct {
	Sender  string    // envelope sender (RFC 5321 MAIL FROM), "" for the null sender
	Now     time.Time // the time the message is judged at; zero means time.Now()
	Options Options
}

// Result holds the facts of one message, computed group by group on first
// use. It is safe for concurrent use.
type Result struct {
	ctx context.Context // bounds the lazy work; kept because groups run later
	msg *content.Message
	in  Input
	opt Options

	partsOnce sync.Once
	walk      *walkResult

	htmlOnce sync.Once
	html     HTMLFacts
	scan     htmlScan          // links, images, forms found by the HTML scan
	classes  map[string]string // class name → CSS declarations from <style> (bounded)

	urlsOnce sync.Once
	urls     URLFacts

	mimeOnce sync.Once
	mime     MIMEFacts

	hdrOnce sync.Once
	hdr     HeaderFacts

	textOnce sync.Once
	text     TextFacts
	visible  string
	hidden   string
}

// Analyze prepares the facts of msg. It does no work by itself: each group
// is computed when first asked for, under ctx (a done ctx ends the work and
// sets the group's Truncated fact). msg must not be nil.
func Analyze(ctx context.Context, msg *content.Message, in Input) *Result {
	if ctx == nil {
		ctx = context.Background()
	}
	if in.Now.IsZero() {
		in.Now = time.Now()
	}
	return &Result{ctx: ctx, msg: msg, in: in, opt: in.Options.withDefaults()}
}

// All computes every group (for tests, benchmarks and `moat rules test`).
func (r *Result) All() {
	r.Headers()
	r.MIME()
	r.HTML()
	r.URLs()
	r.Text()
}

// Headers returns the header heuristics (group "hdr"). It reads the header
// section only.
func (r *Result) Headers() *HeaderFacts {
	r.hdrOnce.Do(r.computeHeaders)
	return &r.hdr
}

// MIME returns the MIME structure facts (group "mime").
func (r *Result) MIME() *MIMEFacts {
	r.mimeOnce.Do(r.computeMIME)
	return &r.mime
}

// HTML returns the HTML facts (group "html").
func (r *Result) HTML() *HTMLFacts {
	r.htmlOnce.Do(r.computeHTML)
	return &r.html
}

// URLs returns the URL facts (group "urls"), with the list of URLs found.
func (r *Result) URLs() *URLFacts {
	r.urlsOnce.Do(r.computeURLs)
	return &r.urls
}

// Text returns the text facts (group "text").
func (r *Result) Text() *TextFacts {
	r.textOnce.Do(r.computeText)
	return &r.text
}

// VisibleText returns the text a reader sees: text/plain parts and HTML
// rendered to text without its hidden parts, at most Options.MaxTextBytes.
func (r *Result) VisibleText() string {
	r.Text()
	return r.visible
}

// HiddenText returns the text of HTML elements styled to be invisible
// (display:none, tiny fonts, text coloured like its background).
func (r *Result) HiddenText() string {
	r.HTML()
	return r.hidden
}

// Parts returns the leaf MIME parts found, in order (at most
// Options.MaxParts); for the classifier's part-type tokens. The slice is
// shared: callers must not change it.
func (r *Result) Parts() []Part {
	return r.parts().parts
}

func (r *Result) parts() *walkResult {
	r.partsOnce.Do(func() { r.walk = walkMessage(r.ctx, r.msg, r.opt) })
	return r.walk
}
