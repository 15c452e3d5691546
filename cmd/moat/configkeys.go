package main

import (
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// This file finds what a configuration names that moat does not have: a
// misspelled key in the file, with its line and column and the nearest
// key moat knows, and a MOAT_* environment variable that names no key
// (viper ignores both silently, or reports the first without a position).

// configKeys is the key tree of Config: each struct's keys by their
// mapstructure name (squashed structs inlined), a map's values and a
// list's items by their element type.
type keyTree struct {
	fields map[string]*keyTree // a section: its keys
	elem   *keyTree            // a map or a list: what each entry is
	leaf   bool                // a value: nothing below it is checked
}

var durationType = reflect.TypeOf(time.Duration(0))

// treeOf builds the key tree of t.
func treeOf(t reflect.Type) *keyTree {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case t == durationType || t == reflect.TypeOf(time.Time{}):
		return &keyTree{leaf: true}
	case t.Kind() == reflect.Struct:
		n := &keyTree{fields: map[string]*keyTree{}}
		addFields(n, t)
		return n
	case t.Kind() == reflect.Map && t.Key().Kind() == reflect.String, t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		e := treeOf(t.Elem())
		if e.leaf {
			return &keyTree{leaf: true}
		}
		return &keyTree{elem: e}
	}
	return &keyTree{leaf: true}
}

// addFields adds t's keys to n.
func addFields(n *keyTree, t reflect.Type) {
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		tag := f.Tag.Get("mapstructure")
		name, opts, _ := strings.Cut(tag, ",")
		switch {
		case name == "-":
		case name == "" && strings.Contains(opts, "squash"):
			ft := f.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			addFields(n, ft)
		case name != "":
			n.fields[name] = treeOf(f.Type)
		}
	}
}

// unknownKeys walks the YAML document data of file along Config and
// returns one error per key Config does not have, in document order:
// "FILE:LINE:COL: PATH: unknown key (did you mean ...?)".
func unknownKeys(file string, data []byte) []error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil || len(doc.Content) == 0 {
		return nil // a syntax error is viper's to report
	}
	var errs []error
	walkKeys(file, "", doc.Content[0], treeOf(reflect.TypeOf(Config{})), &errs)
	return errs
}

func walkKeys(file, path string, n *yaml.Node, t *keyTree, errs *[]error) {
	if t.leaf || n == nil {
		return
	}
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	switch {
	case t.fields != nil && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Tag == "!!merge" {
				walkKeys(file, path, v, t, errs)
				continue
			}
			// viper reads keys case-insensitively.
			name := strings.ToLower(k.Value)
			sub, ok := t.fields[name]
			if !ok {
				msg := fmt.Sprintf("%s:%d:%d: %s: unknown key", file, k.Line, k.Column, join(path, k.Value))
				if s := nearest(name, t.fields); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				*errs = append(*errs, errors.New(msg))
				continue
			}
			walkKeys(file, join(path, name), v, sub, errs)
		}
	case t.elem != nil && n.Kind == yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkKeys(file, join(path, n.Content[i].Value), n.Content[i+1], t.elem, errs)
		}
	case t.elem != nil && n.Kind == yaml.SequenceNode:
		for i, item := range n.Content {
			walkKeys(file, fmt.Sprintf("%s[%d]", path, i), item, t.elem, errs)
		}
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// nearest is the key of fields closest to name by edit distance, when it
// is close enough to be a misspelling ("" otherwise).
func nearest[V any](name string, fields map[string]V) string {
	best, bestD := "", max(2, len(name)/3)+1
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if d := editDistance(name, k); d < bestD {
			best, bestD = k, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b (bounded inputs:
// key names).
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// decodeErrPath matches the key mapstructure names in a decoding error:
// 'smtp.max_message_size' cannot parse ..., 'listeners[0]' has ...
var decodeErrPath = regexp.MustCompile(`^'([^']*)' `)

// locateDecodeErrors prefixes each line of a decoding error that names a
// key with FILE:LINE:COL of that key in data.
func locateDecodeErrors(file string, data []byte, err error) error {
	var doc yaml.Node
	if yaml.Unmarshal(data, &doc) != nil || len(doc.Content) == 0 {
		return err
	}
	lines := strings.Split(err.Error(), "\n")
	changed := false
	for i, l := range lines {
		m := decodeErrPath.FindStringSubmatch(l)
		if m == nil || m[1] == "" {
			continue
		}
		if k := findKey(doc.Content[0], m[1]); k != nil {
			lines[i] = fmt.Sprintf("%s:%d:%d: %s", file, k.Line, k.Column, l)
			changed = true
		}
	}
	if !changed {
		return err
	}
	return errors.New(strings.Join(lines, "\n"))
}

// findKey returns the node of path (a.b[2].c, keys case-insensitive) in
// n: the key's node for a mapping entry, the item's for a list index.
func findKey(n *yaml.Node, path string) *yaml.Node {
	var at *yaml.Node
	for _, part := range strings.Split(path, ".") {
		name, idx := part, -1
		if open := strings.IndexByte(part, '['); open > 0 && strings.HasSuffix(part, "]") {
			i, err := strconv.Atoi(part[open+1 : len(part)-1])
			if err != nil {
				return nil
			}
			name, idx = part[:open], i
		}
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if strings.EqualFold(n.Content[i].Value, name) {
				at, next = n.Content[i], n.Content[i+1]
				break
			}
		}
		if next == nil {
			return nil
		}
		n = next
		if idx >= 0 {
			if n.Kind != yaml.SequenceNode || idx >= len(n.Content) {
				return nil
			}
			n = n.Content[idx]
			at = n
		}
	}
	return at
}

// toolVariables are MOAT_* variables moat's own scripts and tests set for
// themselves, not configuration keys: never warned about.
var toolVariables = map[string]bool{
	"MOAT_BIN": true, "MOAT_PEERS_REQUIRED": true,
}

// envWarnings returns a warning for every MOAT_* variable of environ that
// names no configuration key (known: the environment names of keys),
// with the nearest known name when one is close.
func envWarnings(environ []string, known map[string]bool) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "MOAT_") || known[name] || toolVariables[name] {
			continue
		}
		w := fmt.Sprintf("environment variable %s names no configuration key and is ignored", name)
		if s := nearest(name, known); s != "" {
			w += fmt.Sprintf(" (did you mean %s?)", s)
		}
		out = append(out, w)
	}
	sort.Strings(out)
	return out
}

// envName is the MOAT_* variable of a viper key.
func envName(key string) string {
	return "MOAT_" + strings.ToUpper(strings.ReplaceAll(key, keyDelim, "_"))
}

// configKeys are the keys of the defaults, in viper's form (keyDelim
// separated): those a MOAT_* variable can set.
func configKeys() []string {
	v := viper.NewWithOptions(viper.KeyDelimiter(keyDelim))
	setDefaults(v, "", reflect.ValueOf(defaults()))
	return v.AllKeys()
}
