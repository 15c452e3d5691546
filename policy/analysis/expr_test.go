package analysis

import (
	"testing"

	"github.com/expr-lang/expr"
)

// exprEnv mirrors how rules will expose the groups: one field per group,
// named by its expr tag.
type exprEnv struct {
	URLs *URLFacts    `expr:"urls"`
	HTML *HTMLFacts   `expr:"html"`
	MIME *MIMEFacts   `expr:"mime"`
	Hdr  *HeaderFacts `expr:"hdr"`
	Text *TextFacts   `expr:"text"`
}

// TestFactsReadByExpr checks that the expr tags type-check and read as
// rules/README.md ("Content facts") documents them.
func TestFactsReadByExpr(t *testing.T) {
	r := analyze(t, htmlMsg(`<a href="http://0x7f000001/">www.bank.example</a><div style="display:none">x</div>`), Input{})
	env := exprEnv{r.URLs(), r.HTML(), r.MIME(), r.Headers(), r.Text()}
	for _, code := range []string{
		`urls.count == 2 && urls.obfuscated_ip && urls.text_mismatch && "bank.example" in urls.domains`,
		`any(urls.list, .is_ip && .source == "href" && .host == "127.0.0.1")`,
		`html.only && html.hidden_text && html.invisible && html.links == 1`,
		`!mime.malformed && mime.parts == 1 && "text/html" in mime.types`,
		`!hdr.date_missing && hdr.from_domain == "sender.example" && hdr.to_count == 1`,
		`text.script == "latin" && text.words >= 3 && text.caps < 0.5`,
	} {
		prog, err := expr.Compile(code, expr.Env(exprEnv{}), expr.AsBool())
		if err != nil {
			t.Errorf("%s: %v", code, err)
			continue
		}
		out, err := expr.Run(prog, env)
		if err != nil || out != true {
			t.Errorf("%s = %v, %v", code, out, err)
		}
	}
}
