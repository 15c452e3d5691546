// Package litscan finds which of a fixed list of literal strings occur in
// a text, all of them in one pass over it.
//
// A rule set asks many questions of the same message body: does it hold
// "viagra" or "casino", "dear customer", "bitcoin"…? Asking each with
// strings.Contains reads the body once per literal; an Aho–Corasick
// automaton (Aho and Corasick, "Efficient string matching", CACM 18(6),
// 1975) reads it once for all of them. The automaton here is a DFA over
// byte classes: every byte that occurs in some literal has a class of its
// own, all other bytes share class 0, so the table stays small (states ×
// classes) and each text byte costs one table lookup.
//
// Matching is ASCII case-insensitive: literals and text are compared with
// A–Z folded to a–z and every other byte as it is. A caller that needs
// exact case uses the result as a prefilter and confirms.
package litscan

import (
	"errors"
	"math/bits"
)

// MaxBytes bounds the summed length of the literals of one Set.
const MaxBytes = 1 << 16

// Set is an immutable compiled list of literals, safe for concurrent use.
type Set struct {
	n     int // literals
	class [256]uint8
	width int // byte classes
	// delta[row+class] is the next state's row (state × width), so the
	// scan needs no multiplication; complemented (^row, negative) when
	// that state or one of its suffixes ends a literal
	delta []int32
	out   [][]int32 // by state: the literals that end there
	dict  []int32   // by state: the nearest proper suffix state with output, 0 for none
}

// New compiles lits; literal i is reported as bit i. Duplicates are
// allowed (each is reported). An empty literal, or more than MaxBytes in
// all, is an error.
func New(lits []string) (*Set, error) {
	total := 0
	for _, l := range lits {
		if l == "" {
			return nil, errors.New("litscan: empty literal")
		}
		total += len(l)
	}
	if total > MaxBytes {
		return nil, errors.New("litscan: literals too long")
	}
	s := &Set{n: len(lits)}
	// byte classes: one per (folded) byte that occurs in a literal
	width := 1
	for _, l := range lits {
		for i := 0; i < len(l); i++ {
			if b := fold(l[i]); s.class[b] == 0 {
				s.class[b] = uint8(width)
				width++
				if width > 255 {
					return nil, errors.New("litscan: too many distinct bytes")
				}
			}
		}
	}
	for b := 'A'; b <= 'Z'; b++ {
		s.class[b] = s.class[b+'a'-'A']
	}
	s.width = width
	// the trie; -1: no edge yet
	delta := make([]int32, 0, (1+total)*width)
	newState := func() int32 {
		for i := 0; i < width; i++ {
			delta = append(delta, -1)
		}
		s.out = append(s.out, nil)
		return int32(len(s.out) - 1)
	}
	newState() // root
	for id, l := range lits {
		st := int32(0)
		for i := 0; i < len(l); i++ {
			c := int(s.class[fold(l[i])])
			next := delta[int(st)*width+c]
			if next < 0 {
				next = newState()
				delta[int(st)*width+c] = next
			}
			st = next
		}
		s.out[st] = append(s.out[st], int32(id))
	}
	// breadth first: failure links folded into the table (a DFA), and the
	// dictionary links that chain the states with output
	states := len(s.out)
	fail := make([]int32, states)
	s.dict = make([]int32, states)
	queue := make([]int32, 0, states)
	for c := 0; c < width; c++ {
		if v := delta[c]; v < 0 {
			delta[c] = 0
		} else {
			queue = append(queue, v)
		}
	}
	for len(queue) > 0 {
		u := queue[0]
		queue = queue[1:]
		for c := 0; c < width; c++ {
			v := delta[int(u)*width+c]
			f := delta[int(fail[u])*width+c]
			if v < 0 {
				delta[int(u)*width+c] = f
				continue
			}
			fail[v] = f
			if len(s.out[f]) > 0 {
				s.dict[v] = f
			} else {
				s.dict[v] = s.dict[f]
			}
			queue = append(queue, v)
		}
	}
	for i, v := range delta {
		delta[i] = v * int32(width)
		if len(s.out[v]) > 0 || s.dict[v] != 0 {
			delta[i] = ^delta[i]
		}
	}
	s.delta = delta
	return s, nil
}

func fold(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + 'a' - 'A'
	}
	return b
}

// Len is the number of literals.
func (s *Set) Len() int { return s.n }

// Words is the length of the bit set Scan fills.
func (s *Set) Words() int { return (s.n + 63) / 64 }

// Scan sets bit i of found (found[i/64] & 1<<(i%64)) for every literal i
// that occurs in text; found must have at least Words() words. Bits
// already set stay set.
func (s *Set) Scan(text string, found []uint64) { s.Resume(Start, text, found) }

// State is where a scan stopped: the automaton's state after the text
// read so far.
type State int32

// Start is the state before any text.
const Start State = 0

// Resume goes on with a scan that stopped at st, as if text followed the
// text read so far: Scan(a+b) finds what Scan(a) found and then
// Resume(its state, b) finds. It returns the state at the end of text.
func (s *Set) Resume(st State, text string, found []uint64) State {
	found = found[:s.Words()]
	delta, class, w := s.delta, &s.class, int32(s.width)
	row := int32(st)
	for i := 0; i < len(text); i++ {
		row = delta[row+int32(class[text[i]])]
		if row >= 0 {
			continue
		}
		row = ^row
		for o := row / w; o != 0; o = s.dict[o] {
			for _, id := range s.out[o] {
				found[id>>6] |= 1 << (uint(id) & 63)
			}
		}
	}
	return State(row)
}

// Has reports whether bit i is set in found.
func Has(found []uint64, i int) bool { return found[i>>6]&(1<<(uint(i)&63)) != 0 }

// Count is the number of bits set in found.
func Count(found []uint64) int {
	n := 0
	for _, w := range found {
		n += bits.OnesCount64(w)
	}
	return n
}
