package main

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the q-th quantile (0 < q <= 1) of ds by the
// nearest-rank method: the smallest sample such that at least q of all
// samples are less than or equal to it. With 50 samples p99 is therefore
// the largest one. It returns 0 for no samples.
func Percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := int(math.Ceil(q * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Interval is the time during which one request was in flight.
type Interval struct {
	Start, End time.Time // entering and leaving the handler
}

// UnionWithin returns how long at least one of ivs overlapped the window
// [from, to): the union of the intervals, clipped to the window. Intervals
// may overlap, nest and come in any order.
func UnionWithin(ivs []Interval, from, to time.Time) time.Duration {
	clipped := make([]Interval, 0, len(ivs))
	for _, iv := range ivs {
		s, e := iv.Start, iv.End
		if s.Before(from) {
			s = from
		}
		if e.After(to) {
			e = to
		}
		if e.After(s) {
			clipped = append(clipped, Interval{s, e})
		}
	}
	slices.SortFunc(clipped, func(a, b Interval) int { return a.Start.Compare(b.Start) })
	var total time.Duration
	var cur Interval
	for i, iv := range clipped {
		switch {
		case i == 0:
			cur = iv
		case iv.Start.After(cur.End):
			total += cur.End.Sub(cur.Start)
			cur = iv
		case iv.End.After(cur.End):
			cur.End = iv.End
		}
	}
	if len(clipped) > 0 {
		total += cur.End.Sub(cur.Start)
	}
	return total
}

// Median returns the median of xs (the mean of the two middle values for an
// even count), or NaN for none.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
