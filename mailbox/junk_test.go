package mailbox

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDeliverJunk(t *testing.T) {
	tests := []struct {
		name, folder string
		dir          string // where the message lands, under the mailbox
	}{
		{"default", "", ".Junk/new"},
		{"configured", "Spam", ".Spam/new"},
		{"subfolder", "Spam.Probable", ".Spam.Probable/new"},
		{"inbox", "INBOX", "new"},
		{"inbox any case", "inbox", "new"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			cfg := testConfig(root)
			cfg.JunkFolder = tt.folder
			d, err := New(cfg, localDomains)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			if err := d.DeliverTo(ctx, Delivery{Sender: "s@far.example", Mailbox: "alice+x@example.org", Junk: true}, strings.NewReader("Subject: spam\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			if err := d.DeliverTo(ctx, Delivery{Mailbox: "alice@example.org"}, strings.NewReader("Subject: ham\r\n\r\n")); err != nil {
				t.Fatal(err)
			}
			box := filepath.Join(root, "example.org", "alice")
			read := func(sub string) []string {
				ents, _ := os.ReadDir(filepath.Join(box, sub))
				var out []string
				for _, e := range ents {
					b, _ := os.ReadFile(filepath.Join(box, sub, e.Name()))
					out = append(out, string(b))
				}
				return out
			}
			got := strings.Join(read(tt.dir), "|")
			if !strings.Contains(got, "Return-Path: <s@far.example>\r\nSubject: spam") {
				t.Errorf("%s: %q", tt.dir, got)
			}
			if inbox := strings.Join(read("new"), "|"); !strings.Contains(inbox, "Return-Path: <>\r\nSubject: ham") ||
				tt.dir != "new" && strings.Contains(inbox, "spam") {
				t.Errorf("new/: %q", inbox)
			}
		})
	}
}

func TestJunkFolderConfig(t *testing.T) {
	var c Config
	c.SetDefaults("/data")
	if c.JunkFolder != DefaultJunkFolder {
		t.Errorf("default junk_folder %q", c.JunkFolder)
	}
	for _, bad := range []string{".Junk", "a/b", "../x", "Jü"} {
		cfg := testConfig(t.TempDir())
		cfg.JunkFolder = bad
		err := cfg.Validate(localDomains)
		if err == nil || !strings.Contains(err.Error(), "mailboxes.junk_folder") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	d, err := New(testConfig(t.TempDir()), localDomains)
	if err != nil || d.JunkFolder() != DefaultJunkFolder {
		t.Errorf("JunkFolder() = %q, %v", d.JunkFolder(), err)
	}
}
