package check

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes r as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r for people: per class its verdict, errors, warnings
// and notes, then its objects with their files and, after a dry run, what
// was read.
func (r *Report) WriteText(w io.Writer) error {
	b := &strings.Builder{}
	for _, u := range r.Usage {
		fmt.Fprintf(b, "error: %s\n", u)
	}
	for i := range r.Classes {
		writeClass(b, &r.Classes[i])
	}
	if len(r.Skipped) > 0 {
		fmt.Fprintf(b, "not classes, skipped: %s\n", strings.Join(r.Skipped, "; "))
	}
	fmt.Fprintf(b, "%s\n", verdict(r.Code()))
	_, err := io.WriteString(w, b.String())
	return err
}

func verdict(code int) string {
	switch code {
	case ExitOK:
		return "ok"
	case ExitProblems:
		return "FAILED: a class would not mount"
	case ExitIncomplete:
		return "incomplete: no problem found, but not everything could be checked"
	}
	return "FAILED: nothing was checked"
}

func writeClass(b *strings.Builder, c *Class) {
	state := "ok"
	if len(c.Errors) > 0 || c.failedReads() > 0 {
		state = "WOULD NOT MOUNT"
	}
	fmt.Fprintf(b, "%s: SecretProviderClass %s (%s", c.Source, refOf(c.Namespace, c.Name), c.APIVersion)
	if c.Provider != "" {
		fmt.Fprintf(b, ", provider %s", c.Provider)
	}
	fmt.Fprintf(b, "): %s\n", state)
	for _, e := range c.Errors {
		fmt.Fprintf(b, "  error: %s\n", e)
	}
	for _, w := range c.Warnings {
		fmt.Fprintf(b, "  warning %s: %s\n", w.Reason, w.Message)
	}
	for _, n := range c.Notes {
		fmt.Fprintf(b, "  note: %s\n", n)
	}
	if len(c.Objects) == 0 {
		return
	}
	if d := c.DryRun; d != nil {
		fmt.Fprintf(b, "  read as %s (%s) in %s; the volume needs %d of %d bytes\n", d.As, d.Identity, d.Region, d.VolumeBytes, d.VolumeLimit)
	}
	files := 0
	for _, o := range c.Objects {
		files += len(o.Files)
	}
	fmt.Fprintf(b, "  %d objects, %d files:\n", len(c.Objects), files)
	for _, o := range c.Objects {
		fmt.Fprintf(b, "    objects[%d] %s %q%s", o.Index, o.Type, o.Name, selector(o))
		if o.Read != nil {
			fmt.Fprintf(b, ": %s", readText(o.Read))
		}
		b.WriteString("\n")
		// Aligned per object; the last cell of a line is not padded.
		tw := tabwriter.NewWriter(b, 0, 4, 2, ' ', 0)
		for _, f := range o.Files {
			fmt.Fprintf(tw, "      %s\t%s", f.Path, f.Mode)
			if f.Bytes != nil {
				fmt.Fprintf(tw, "\t%d bytes", *f.Bytes)
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}
}

// selector describes which version o reads, and whether it is optional.
func selector(o Object) string {
	var s []string
	if o.Version != "" {
		s = append(s, "version "+o.Version)
	}
	if o.Label != "" {
		s = append(s, "label "+o.Label)
	}
	if o.Optional {
		s = append(s, "optional")
	}
	if len(s) == 0 {
		return ""
	}
	return " (" + strings.Join(s, ", ") + ")"
}

func readText(r *Read) string {
	switch {
	case r.Status == ReadFound:
		return fmt.Sprintf("found, version %s", r.Version)
	case r.Status == ReadSkipped:
		return "not in the store: optional, left out: " + r.Error
	case r.Status == ReadUnknown:
		return "not checked: " + r.Error
	}
	return "FAILED: " + r.Error
}

func (c *Class) failedReads() int {
	n := 0
	for _, o := range c.Objects {
		if o.Read != nil && o.Read.Status == ReadFailed {
			n++
		}
	}
	return n
}
