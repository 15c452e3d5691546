package smtpd

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strconv"
	"strings"
	"testing"

	"moat/internal/reply"
)

// TestRepliesNamed reads this package's source: every reply is built in
// replies.go with reply.New or reply.Plain from literal codes, each of
// those is a valid reply whose enhanced code has the class of its basic
// code (RFC 3463 §2; Plain only where RFC 2034 §3 leaves the enhanced
// code off), and c.reply and c.syntaxError are never given a code.
func TestRepliesNamed(t *testing.T) {
	ents, err := os.ReadDir(".")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	built := 0
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				if sel, ok := n.Type.(*ast.SelectorExpr); ok && sel.Sel.Name == "Reply" {
					t.Errorf("%s: a reply.Reply literal; declare a named reply in replies.go", fset.Position(n.Pos()))
				}
			case *ast.CallExpr:
				sel, ok := n.Fun.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				x, _ := sel.X.(*ast.Ident)
				switch {
				case x != nil && x.Name == "reply" && (sel.Sel.Name == "New" || sel.Sel.Name == "Plain"):
					if name != "replies.go" {
						t.Errorf("%s: reply.%s outside replies.go", fset.Position(n.Pos()), sel.Sel.Name)
					}
					checkBuilt(t, fset.Position(n.Pos()).String(), sel.Sel.Name, n.Args)
					built++
				case x != nil && x.Name == "c" && (sel.Sel.Name == "reply" || sel.Sel.Name == "syntaxError"):
					ast.Inspect(n, func(m ast.Node) bool {
						if lit, ok := m.(*ast.BasicLit); ok && lit.Kind == token.INT {
							t.Errorf("%s: inline code %s in c.%s", fset.Position(lit.Pos()), lit.Value, sel.Sel.Name)
						}
						return true
					})
				}
			}
			return true
		})
	}
	if built < 50 {
		t.Errorf("found %d named replies; has replies.go moved?", built)
	}
}

// checkBuilt checks one reply.New(code, subject, detail, text) or
// reply.Plain(code, text) call.
func checkBuilt(t *testing.T, pos, fn string, args []ast.Expr) {
	t.Helper()
	ints := make([]int, 0, 3)
	for _, a := range args[:len(args)-1] {
		lit, ok := a.(*ast.BasicLit)
		if !ok || lit.Kind != token.INT {
			t.Errorf("%s: reply.%s with a code that is not a literal", pos, fn)
			return
		}
		v, _ := strconv.Atoi(lit.Value)
		ints = append(ints, v)
	}
	if fn == "Plain" {
		switch ints[0] {
		case 220, 250, 334, 354:
		default:
			t.Errorf("%s: %d without an enhanced code (RFC 2034 §3 asks for one)", pos, ints[0])
		}
		return
	}
	r := reply.New(ints[0], ints[1], ints[2], "x")
	if err := r.Validate(); err != nil {
		t.Errorf("%s: %v", pos, err)
	}
	if r.Enhanced[0] != r.Code/100 || ints[1] > 999 || ints[2] > 999 {
		t.Errorf("%s: %d with %s", pos, r.Code, r.Enhanced)
	}
}

// TestNamedRepliesValid checks the replies a session gets from here.
func TestNamedRepliesValid(t *testing.T) {
	for _, r := range []*reply.Reply{ErrDataTooLarge, replyTooBig, replyMaxRcpts, replyBye, replyIdle, replyManyErrors, replyInternal} {
		if err := r.Validate(); err != nil || r.Enhanced[0] != r.Code/100 {
			t.Errorf("%s: %v", r, err)
		}
	}
}
