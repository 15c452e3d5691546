package main

import (
	"bytes"
	"testing"
)

func TestProgressBar(t *testing.T) {
	var b bytes.Buffer
	if newProgressBar(&b, 10, false) != nil {
		t.Fatal("a bar on a buffer, which is no terminal")
	}
	var nilBar *progressBar
	nilBar.draw(1, "x") // draws nothing, does not panic
	nilBar.finish()
	p := &progressBar{w: &b, total: 4}
	p.draw(2, "delivered 1")
	p.draw(4, "delivered 3") // the last step is always drawn
	p.draw(9, "over")        // more than total stays a full bar
	p.finish()
	want := "\r[===============               ] 2/4  delivered 1 " +
		"\r[==============================] 4/4  delivered 3 " +
		"\r[==============================] 9/4  over \n"
	if b.String() != want {
		t.Errorf("bar:\n%q\nwant\n%q", b.String(), want)
	}
}
