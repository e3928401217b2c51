package policy

import (
	"strconv"
	"strings"
)

// Problem is one thing wrong with a policy file, located at the YAML node
// that caused it so an operator can jump straight to it.
type Problem struct {
	// File is the file name given to Parse or Load.
	File string
	// Line and Column are 1-based. Column is 0 when the position inside the
	// line is unknown, which happens only for YAML syntax errors (the YAML
	// parser reports lines, not columns). Line is always >= 1.
	Line, Column int
	// Message says what is wrong and, where it helps, what would be right.
	Message string
}

// String formats the problem as "file:line:col: message", the form editors
// and CI annotations understand. When Column is 0 it is left out
// ("file:line: message"); when File is empty it is left out too.
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		b.WriteByte(':')
	}
	b.WriteString(strconv.Itoa(p.Line))
	b.WriteByte(':')
	if p.Column > 0 {
		b.WriteString(strconv.Itoa(p.Column))
		b.WriteByte(':')
	}
	b.WriteByte(' ')
	b.WriteString(p.Message)
	return b.String()
}

// Error is returned by Parse and Load when a policy is invalid. It holds
// every problem found, sorted by position, so one run of the validator is
// enough to fix a file.
type Error struct {
	Problems []Problem
}

// Error lists all problems, one per line.
func (e *Error) Error() string {
	if len(e.Problems) == 0 {
		return "invalid policy"
	}
	lines := make([]string, len(e.Problems))
	for i, p := range e.Problems {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}
