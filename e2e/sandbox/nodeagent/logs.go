package nodeagent

// Container logs are kept in the CRI log format (the one the kubelet reads from
// containerd): one record per line, "<RFC3339Nano time> <stdout|stderr> <F|P>
// <content>", where P marks a partial line continued by the next record. Each
// container run writes its own file, <restartCount>.log, so `previous` reads the
// file before the current one.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"time"
)

const (
	streamStdout = "stdout"
	streamStderr = "stderr"
	tagFull      = "F"
	tagPartial   = "P"
	// maxLogLine is the longest line written as one record; longer lines are split
	// into partial records (containerd's default is 16 KiB too).
	maxLogLine = 16 * 1024
)

// logRecord is one parsed CRI log line.
type logRecord struct {
	Time    time.Time
	Stream  string
	Partial bool
	Content []byte
}

// formatRecord renders one CRI log line.
func formatRecord(r logRecord) []byte {
	tag := tagFull
	if r.Partial {
		tag = tagPartial
	}
	var b bytes.Buffer
	b.WriteString(r.Time.UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(r.Stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.Write(r.Content)
	b.WriteByte('\n')
	return b.Bytes()
}

// parseRecord parses one CRI log line (without its newline).
func parseRecord(line []byte) (logRecord, error) {
	fields := bytes.SplitN(line, []byte{' '}, 4)
	if len(fields) < 3 {
		return logRecord{}, fmt.Errorf("malformed log line %q", line)
	}
	t, err := time.Parse(time.RFC3339Nano, string(fields[0]))
	if err != nil {
		return logRecord{}, fmt.Errorf("malformed time in log line %q: %w", line, err)
	}
	r := logRecord{Time: t, Stream: string(fields[1])}
	switch string(fields[2]) {
	case tagFull:
	case tagPartial:
		r.Partial = true
	default:
		return logRecord{}, fmt.Errorf("malformed tag in log line %q", line)
	}
	if len(fields) == 4 {
		r.Content = fields[3]
	}
	return r, nil
}

// logFile is the log of one container run, written by the goroutines that read
// the container's stdout and stderr, and followed by log readers.
type logFile struct {
	path string

	mu      sync.Mutex
	f       *os.File
	changed chan struct{} // closed and replaced on every write
	closed  bool
}

func createLogFile(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("creating log file %s: %w", path, err)
	}
	return &logFile{path: path, f: f, changed: make(chan struct{})}, nil
}

func (l *logFile) write(r logRecord) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	_, _ = l.f.Write(formatRecord(r)) // a full disk loses log lines, never the container
	close(l.changed)
	l.changed = make(chan struct{})
}

// copyFrom writes the lines read from r as records of stream until r ends.
func (l *logFile) copyFrom(r io.Reader, stream string) {
	br := bufio.NewReaderSize(r, maxLogLine)
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			full := bytes.HasSuffix(line, []byte{'\n'})
			content := append([]byte(nil), bytes.TrimSuffix(line, []byte{'\n'})...)
			partial := !full && errors.Is(err, bufio.ErrBufferFull)
			l.write(logRecord{Time: time.Now(), Stream: stream, Partial: partial, Content: content})
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// close ends the file; followers stop once they have read it all.
func (l *logFile) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return
	}
	l.closed = true
	_ = l.f.Close()
	close(l.changed)
}

// wait returns a channel that is closed at the next write or at close, and
// whether the file is already closed.
func (l *logFile) wait() (<-chan struct{}, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed, l.closed
}

// logOptions are the kubelet API's containerLogs parameters.
type logOptions struct {
	Follow     bool
	Timestamps bool
	TailLines  *int64
	LimitBytes *int64
	Since      time.Time
	// Stream is "", "All", "Stdout" or "Stderr".
	Stream string
}

// errLimitReached ends a copy at limitBytes.
var errLimitReached = errors.New("log limit reached")

// logWriter renders records for a reader of the logs.
type logWriter struct {
	w       io.Writer
	opts    logOptions
	written int64
}

func (lw *logWriter) include(r logRecord) bool {
	switch lw.opts.Stream {
	case "Stdout":
		if r.Stream != streamStdout {
			return false
		}
	case "Stderr":
		if r.Stream != streamStderr {
			return false
		}
	}
	return lw.opts.Since.IsZero() || !r.Time.Before(lw.opts.Since)
}

func (lw *logWriter) emit(r logRecord) error {
	var b bytes.Buffer
	if lw.opts.Timestamps {
		b.WriteString(r.Time.UTC().Format(time.RFC3339Nano))
		b.WriteByte(' ')
	}
	b.Write(r.Content)
	if !r.Partial {
		b.WriteByte('\n')
	}
	out := b.Bytes()
	if lw.opts.LimitBytes != nil {
		left := *lw.opts.LimitBytes - lw.written
		if left <= 0 {
			return errLimitReached
		}
		if int64(len(out)) > left {
			out = out[:left]
		}
	}
	n, err := lw.w.Write(out)
	lw.written += int64(n)
	if err != nil {
		return err
	}
	if lw.opts.LimitBytes != nil && lw.written >= *lw.opts.LimitBytes {
		return errLimitReached
	}
	if f, ok := lw.w.(interface{ Flush() }); ok {
		f.Flush()
	}
	return nil
}

// readLog writes the log at path to w as the options ask. With Follow it goes on
// writing what live appends until live is closed or ctx ends; live may be nil
// for a finished run.
func readLog(ctx context.Context, path string, live *logFile, opts logOptions, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("opening log %s: %w", path, err)
	}
	defer f.Close()
	lw := &logWriter{w: w, opts: opts}
	var changed <-chan struct{}
	closed := true
	if live != nil {
		changed, closed = live.wait()
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return fmt.Errorf("reading log %s: %w", path, err)
	}
	complete := data[:bytes.LastIndexByte(data, '\n')+1]
	offset := int64(len(complete))
	var records []logRecord
	for _, line := range bytes.Split(bytes.TrimSuffix(complete, []byte{'\n'}), []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		r, err := parseRecord(line)
		if err != nil {
			continue
		}
		if lw.include(r) {
			records = append(records, r)
		}
	}
	if opts.TailLines != nil {
		records = tail(records, *opts.TailLines)
	}
	for _, r := range records {
		if err := lw.emit(r); err != nil {
			return ignoreLimit(err)
		}
	}
	if !opts.Follow || live == nil {
		return nil
	}
	for {
		if closed {
			// Drain what was written before the close.
			return ignoreLimit(followFrom(f, &offset, lw))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		}
		changed, closed = live.wait()
		if err := followFrom(f, &offset, lw); err != nil {
			return ignoreLimit(err)
		}
	}
}

func ignoreLimit(err error) error {
	if errors.Is(err, errLimitReached) {
		return nil
	}
	return err
}

// followFrom emits the complete lines appended after *offset.
func followFrom(f *os.File, offset *int64, lw *logWriter) error {
	if _, err := f.Seek(*offset, io.SeekStart); err != nil {
		return err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return err
	}
	complete := data[:bytes.LastIndexByte(data, '\n')+1]
	*offset += int64(len(complete))
	for _, line := range bytes.Split(bytes.TrimSuffix(complete, []byte{'\n'}), []byte{'\n'}) {
		if len(line) == 0 {
			continue
		}
		r, err := parseRecord(line)
		if err != nil || !lw.include(r) {
			continue
		}
		if err := lw.emit(r); err != nil {
			return err
		}
	}
	return nil
}

// tail keeps the records of the last n lines; a line is a run of partial records
// ended by a full one.
func tail(records []logRecord, n int64) []logRecord {
	if n < 0 {
		return records
	}
	if n == 0 {
		return nil
	}
	lines := int64(0)
	for i := len(records) - 1; i >= 0; i-- {
		if !records[i].Partial || i == len(records)-1 {
			if lines == n {
				return records[i+1:]
			}
			lines++
		}
	}
	return records
}

// logName is the file of a container's run number restart.
func logName(restart int32) string { return strconv.Itoa(int(restart)) + ".log" }
