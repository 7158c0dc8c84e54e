package sqlstore

import "strings"

// The SQL of the schema files is cut into tokens by a small lexer that
// knows what a statement boundary and an identifier are: words (letters,
// digits, '_' and '$'), quoted strings and identifiers ('...', "..." and
// `...`, with the quote doubled inside), comments (-- to the end of the
// line, /* ... */), ';' and everything else one byte at a time. It does
// not know backslash escapes nor PostgreSQL's dollar quoting; the schema
// files use neither.

type tokKind uint8

const (
	tokOther tokKind = iota
	tokSpace
	tokWord
	tokQuoted
	tokComment
	tokSemicolon
)

// next returns the kind and length of the token at the start of s, which
// is not empty. An unterminated quote or comment runs to the end of s.
func next(s string) (tokKind, int) {
	c := s[0]
	switch {
	case isWordByte(c):
		n := 1
		for n < len(s) && isWordByte(s[n]) {
			n++
		}
		return tokWord, n
	case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v':
		return tokSpace, 1
	case c == '\'' || c == '"' || c == '`':
		if i := strings.IndexByte(s[1:], c); i >= 0 {
			return tokQuoted, i + 2
		}
		return tokQuoted, len(s)
	case c == '-' && strings.HasPrefix(s, "--"):
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			return tokComment, i + 1
		}
		return tokComment, len(s)
	case c == '/' && strings.HasPrefix(s, "/*"):
		if i := strings.Index(s[2:], "*/"); i >= 0 {
			return tokComment, i + 4
		}
		return tokComment, len(s)
	case c == ';':
		return tokSemicolon, 1
	}
	return tokOther, 1
}

func isWordByte(c byte) bool {
	return c == '_' || c == '$' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= 0x80
}

// Split cuts sql into its statements, without the ';' that ends them and
// without the white space and comments around them. Statements that hold
// nothing but white space and comments are left out.
func Split(sql string) []string {
	var out []string
	start, body := 0, false // body: the statement has more than space and comments
	for i := 0; i < len(sql); {
		k, n := next(sql[i:])
		switch k {
		case tokSemicolon:
			if body {
				out = append(out, trim(sql[start:i]))
			}
			start, body = i+1, false
		case tokSpace, tokComment:
		default:
			body = true
		}
		i += n
	}
	if body {
		out = append(out, trim(sql[start:]))
	}
	return out
}

// trim removes the white space and comments at both ends of a statement.
func trim(s string) string {
	for s != "" {
		k, n := next(s)
		if k != tokSpace && k != tokComment {
			break
		}
		s = s[n:]
	}
	// Comments at the end: cut after the last token that is neither.
	end := 0
	for i := 0; i < len(s); {
		k, n := next(s[i:])
		i += n
		if k != tokSpace && k != tokComment {
			end = i
		}
	}
	return s[:end]
}

// Rename replaces each word of sql that is a key of names (outside quotes
// and comments, compared exactly) with its value.
func Rename(sql string, names map[string]string) string {
	var b strings.Builder
	b.Grow(len(sql))
	for i := 0; i < len(sql); {
		k, n := next(sql[i:])
		tok := sql[i : i+n]
		if r, ok := names[tok]; ok && k == tokWord {
			tok = r
		}
		b.WriteString(tok)
		i += n
	}
	return b.String()
}
