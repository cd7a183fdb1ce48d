// Package suggest finds the known key an unknown one is likely a typo of,
// for messages such as `unknown key objectAlais; did you mean "objectAlias"?`.
package suggest

import "strings"

// maxDistance is the largest edit distance between an unknown key and the
// known key it is taken for a typo of.
const maxDistance = 3

// Closest is the key of known nearest to key by edit distance, letter
// case ignored and a swap of neighbours counting as one edit, if it is near
// enough to be a likely typo: at most maxDistance edits and at most
// half as many as key has characters. Ties go to the earlier known key.
func Closest(key string, known []string) string {
	k := []rune(strings.ToLower(key))
	best, bestD := "", maxDistance+1
	for _, n := range known {
		nr := []rune(strings.ToLower(n))
		if abs(len(nr)-len(k)) >= bestD { // the distance is at least that
			continue
		}
		if d := editDistance(k, nr); d < bestD {
			best, bestD = n, d
		}
	}
	if best == "" || bestD > len(k)/2 {
		return ""
	}
	return best
}

func abs(n int) int {
	if n < 0 {
		return -n
	}
	return n
}

// editDistance is the optimal string alignment distance of a and b: the
// fewest insertions, deletions, substitutions and swaps of neighbours that
// turn a into b, no substring edited twice.
func editDistance(a, b []rune) int {
	// d[i][j] is the distance of a[:i] and b[:j]; three rows suffice.
	prev2 := make([]int, len(b)+1)
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
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
