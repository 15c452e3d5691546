package analysis

import (
	"archive/zip"
	"bytes"
	"errors"
	"path"
	"strings"

	"github.com/gabriel-vasile/mimetype"
)

// MIMEFacts describe the MIME structure (RFC 2045, RFC 2046). Rules read
// them as mime.<name>.
type MIMEFacts struct {
	Parts           int      `expr:"parts"`             // entities visited, multiparts included
	Depth           int      `expr:"depth"`             // deepest nesting, 0 for a single part
	Types           []string `expr:"types"`             // declared types of the leaf parts, in order, distinct
	Malformed       bool     `expr:"malformed"`         // broken structure: bad Content-Type, no boundary, unclosed multipart, bad header
	TypeMismatch    bool     `expr:"type_mismatch"`     // a part's bytes say another type than declared
	Mismatches      []string `expr:"mismatches"`        // "declared>detected" pairs
	CharsetMismatch bool     `expr:"charset_mismatch"`  // us-ascii (or no charset) with 8-bit bytes, or utf-8 that is not valid
	InvalidUTF8     bool     `expr:"invalid_utf8"`      // declared utf-8, bytes are not
	UnknownCharset  bool     `expr:"unknown_charset"`   // a charset no decoder knows
	BadBase64       bool     `expr:"bad_base64"`        // characters outside the alphabet or a broken quantum
	BadQP           bool     `expr:"bad_qp"`            // quoted-printable that does not decode
	EightBit7Bit    bool     `expr:"eight_bit_7bit"`    // 8-bit bytes in a part declared (or defaulting to) 7bit
	BadEncoding     bool     `expr:"bad_encoding"`      // an unknown Content-Transfer-Encoding
	Attachments     int      `expr:"attachments"`       // leaf parts that are attachments
	Names           []string `expr:"names"`             // attachment file names, lower-case
	DoubleExt       bool     `expr:"double_extension"`  // a name like invoice.pdf.exe
	Executable      bool     `expr:"executable"`        // an attachment that is a program, by name or by bytes
	HiddenExe       bool     `expr:"hidden_executable"` // program bytes under a name that is not a program's
	Archives        int      `expr:"archives"`          // zip archives listed
	ZipMembers      []string `expr:"zip_members"`       // member names of all archives, lower-case
	ZipExecutable   bool     `expr:"zip_executable"`    // a member with an executable or double extension
	ZipEncrypted    bool     `expr:"zip_encrypted"`     // a member is encrypted
	ZipUnreadable   bool     `expr:"zip_unreadable"`    // zip bytes whose central directory does not read
	ZipTruncated    bool     `expr:"zip_truncated"`     // more members than Options.MaxZipMembers
	Truncated       bool     `expr:"truncated"`         // a bound (parts, depth, bytes, time) was hit
}

func (r *Result) computeMIME() {
	w := r.parts()
	f := &r.mime
	f.Parts, f.Depth, f.Malformed, f.Truncated = w.entities, w.depth, w.malformed, w.truncated
	seen := map[string]bool{}
	for i := range w.parts {
		p := &w.parts[i]
		if !seen[p.Type] && len(f.Types) < 100 {
			seen[p.Type] = true
			f.Types = append(f.Types, p.Type)
		}
		f.CharsetMismatch = f.CharsetMismatch || p.charsetMismatch
		f.InvalidUTF8 = f.InvalidUTF8 || p.invalidUTF8
		f.UnknownCharset = f.UnknownCharset || p.unknownCharset
		f.BadBase64 = f.BadBase64 || p.badBase64
		f.BadQP = f.BadQP || p.badQP
		f.EightBit7Bit = f.EightBit7Bit || p.eightBit7bit
		f.BadEncoding = f.BadEncoding || p.badCTE
		if p.Attachment && p.Truncated && !isText(p.Type) {
			f.Truncated = true
		}
		if mismatch(p.Type, p.Detected) && len(f.Mismatches) < 100 {
			f.TypeMismatch = true
			f.Mismatches = append(f.Mismatches, p.Type+">"+p.Detected)
		}
		if !p.Attachment {
			continue
		}
		f.Attachments++
		name := strings.ToLower(p.Name)
		if name != "" && len(f.Names) < 100 {
			f.Names = append(f.Names, name)
		}
		exeBytes := isExeType(p.Detected)
		if doubleExt(name) {
			f.DoubleExt = true
		}
		if exeBytes || isExeName(name) {
			f.Executable = true
		}
		// A program under a harmless name or type.
		if exeBytes && !isExeName(name) {
			f.HiddenExe = true
		}
		if p.Detected == "application/zip" || (maybeZip(p) && !isText(p.Type)) {
			r.listZip(p)
		}
	}
}

func isText(t string) bool { return strings.HasPrefix(t, "text/") }

// detect names the type of data from its leading bytes.
func detect(data []byte) string {
	if len(data) == 0 {
		return ""
	}
	m := mimetype.Detect(data[:min(len(data), 3072)])
	t, _, _ := strings.Cut(m.String(), ";")
	return t
}

var typeAliases = map[string]string{
	"image/jpg":                    "image/jpeg",
	"image/pjpeg":                  "image/jpeg",
	"image/x-png":                  "image/png",
	"application/x-pdf":            "application/pdf",
	"application/x-zip-compressed": "application/zip",
	"application/x-zip":            "application/zip",
	"application/x-msdownload":     "application/vnd.microsoft.portable-executable",
	"application/x-msdos-program":  "application/vnd.microsoft.portable-executable",
	"application/x-dosexec":        "application/vnd.microsoft.portable-executable",
}

// mismatch reports whether detected (from magic bytes) contradicts declared,
// conservatively: generic types on either side never mismatch, text
// declared as another text type never does, and containers (zip, OLE) only
// when declared as something that is never a container.
func mismatch(declared, detected string) bool {
	if detected == "" || detected == "application/octet-stream" || detected == "text/plain" {
		return false
	}
	if a, ok := typeAliases[declared]; ok {
		declared = a
	}
	if declared == "" || declared == "application/octet-stream" || declared == "application/unknown" {
		return false
	}
	if isText(declared) && isText(detected) {
		return false
	}
	for m := mimetype.Lookup(detected); m != nil; m = m.Parent() {
		if m.Is(declared) {
			return false
		}
	}
	if detected == "application/zip" || detected == "application/x-ole-storage" {
		return isText(declared) || strings.HasPrefix(declared, "image/") || strings.HasPrefix(declared, "audio/") ||
			strings.HasPrefix(declared, "video/") || declared == "application/pdf"
	}
	if strings.HasPrefix(detected, "text/") || detected == "application/json" || detected == "application/xml" {
		// text-like formats sniff loosely (CSV, JSON, calendars, XML dialects)
		// HTML behind a document or picture type is a phishing trick.
		return declared == "application/pdf" || strings.HasPrefix(declared, "image/") ||
			strings.HasPrefix(declared, "audio/") || strings.HasPrefix(declared, "video/")
	}
	return true
}

func isExeType(t string) bool {
	switch t {
	case "application/vnd.microsoft.portable-executable", "application/x-executable", "application/x-sharedlib",
		"application/x-mach-binary", "application/x-elf", "application/x-ms-installer", "application/x-ms-shortcut":
		return true
	}
	return false
}

// Extensions Windows (and the Java runtime) run or install on a double-click.
var exeExt = map[string]bool{
	"exe": true, "scr": true, "com": true, "bat": true, "cmd": true, "pif": true, "vbs": true, "vbe": true,
	"js": true, "jse": true, "wsf": true, "wsh": true, "msi": true, "msp": true, "hta": true, "cpl": true,
	"jar": true, "ps1": true, "lnk": true, "reg": true, "dll": true, "scf": true, "msc": true, "appx": true,
}

// Extensions people expect to be documents, pictures or archives.
var docExt = map[string]bool{
	"pdf": true, "doc": true, "docx": true, "xls": true, "xlsx": true, "ppt": true, "pptx": true, "txt": true,
	"rtf": true, "jpg": true, "jpeg": true, "png": true, "gif": true, "zip": true, "htm": true, "html": true,
	"odt": true, "csv": true, "mp3": true, "mp4": true, "rar": true, "7z": true, "eml": true,
}

func ext(name string) string {
	e := path.Ext(name)
	return strings.TrimSpace(strings.TrimPrefix(e, "."))
}

func isExeName(name string) bool { return exeExt[ext(strings.ToLower(name))] }

// doubleExt reports a name whose last extension runs and whose one before
// looks like a document: invoice.pdf.exe, photo.jpg   .scr.
func doubleExt(name string) bool {
	name = strings.ToLower(name)
	if !isExeName(name) {
		return false
	}
	stem := strings.TrimRight(strings.TrimSuffix(name, path.Ext(name)), " ._")
	return docExt[ext(stem)]
}

// maybeZip reports a part that claims to be, or starts like, a zip archive.
func maybeZip(p *Part) bool {
	if strings.Contains(p.Type, "zip") || strings.HasSuffix(strings.ToLower(p.Name), ".zip") {
		return true
	}
	return bytes.HasPrefix(p.data, []byte("PK\x03\x04"))
}

// listZip lists member names from the central directory only (APPNOTE
// §4.3.12); no member is ever decompressed, so a zip bomb costs what its
// directory costs, and archive/zip refuses directories that claim more
// records than the bytes could hold.
func (r *Result) listZip(p *Part) {
	f := &r.mime
	if p.Truncated {
		f.ZipUnreadable, f.Truncated = true, true
		return
	}
	zr, err := zip.NewReader(bytes.NewReader(p.data), int64(len(p.data)))
	if err != nil && !errors.Is(err, zip.ErrInsecurePath) {
		f.ZipUnreadable = true
		return
	}
	f.Archives++
	for i, m := range zr.File {
		if len(f.ZipMembers) >= r.opt.MaxZipMembers || i >= r.opt.MaxZipMembers {
			f.ZipTruncated, f.Truncated = true, true
			return
		}
		name := strings.ToLower(m.Name)
		if len(name) > 255 {
			name = name[:255]
		}
		f.ZipMembers = append(f.ZipMembers, name)
		if isExeName(name) || doubleExt(name) {
			f.ZipExecutable = true
		}
		if m.Flags&0x1 != 0 { // APPNOTE §4.4.4 bit 0: encrypted
			f.ZipEncrypted = true
		}
	}
}
