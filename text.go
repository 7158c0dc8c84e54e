package mb

import "unicode/utf8"

// truncate returns s cut to at most n bytes on a UTF-8 character
// boundary: a cut that would fall inside a character backs up to its
// start, so valid text stays valid. Every text mb shortens goes through it.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for back := 0; n > 0 && back < utf8.UTFMax-1 && !utf8.RuneStart(s[n]); back++ {
		n--
	}
	return s[:n]
}
