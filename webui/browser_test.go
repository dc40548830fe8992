package webui_test

// The console in a real browser: Debian's chromium, headless, driven with
// chromedp against the real idsync binary on its embedded default. The steps
// are what a person setting up an audience would do and check. Each screen
// is saved in $IDSYNC_TEST_SCREENSHOTS (docs/img with
// `make screenshots`), else in a temporary directory named in the log.
// They are JPEG (quality 75), to keep the repository small.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
	"github.com/redis/go-redis/v9"
)

const (
	writeToken = "console-write-token-0123456789"
	readToken  = "console-read-token-0123456789"
	space      = "spa_console"
	audience   = "aud_console"
	dest       = "fb_console"
)

// binary is the idsync binary built once for the package.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "idsync-webui")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "idsync")
	out, err := exec.Command("go", "build", "-o", binary, "../cmd/idsync").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building idsync: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startIdsync runs `idsync run --embedded` with a write and a read token
// (plus extra settings) and returns the admin listener's base URL and the
// embedded Redis address.
func startIdsync(t *testing.T, extra string) (base, redisAddr string) {
	t.Helper()
	dir := t.TempDir()
	cfg := filepath.Join(dir, "idsync.yaml")
	yaml := fmt.Sprintf(`embedded:
  enabled: true
  demo_rate: 1
  kafka_port: 0
admin:
  listen: 127.0.0.1:0
  tokens:
    - {name: alice, token: %s, scope: write}
    - {name: viewer, token: %s, scope: read}
ops:
  listen: 127.0.0.1:0
%s`, writeToken, readToken, extra)
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, binary, "run", "--config", cfg)
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 20 * time.Second
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("idsync log (last 4 KiB):\n%s", tail(logs.Bytes(), 4096))
		}
	})
	addr := make(chan [2]string, 1)
	go func() {
		consoleRE := regexp.MustCompile(`console +(http://\S+)/ui/`)
		redisRE := regexp.MustCompile(`redis +(\S+)`)
		var r string
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := redisRE.FindStringSubmatch(sc.Text()); m != nil && r == "" {
				r = m[1]
			}
			if m := consoleRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- [2]string{m[1], r}
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case a := <-addr:
		return a[0], a[1]
	case <-time.After(60 * time.Second):
		t.Fatalf("idsync printed no console address within 60 s; log:\n%s", tail(logs.Bytes(), 4096))
	}
	return "", ""
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// browser starts headless chromium and returns a chromedp context.
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: run deploy/local/install.sh (it installs Debian's chromium)")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // CI runs as root
		chromedp.WindowSize(1440, 1000),
		chromedp.Flag("disable-dev-shm-usage", true),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 4*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancelCtx(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// ui is one browser session on the console.
type ui struct {
	t    *testing.T
	ctx  context.Context
	base string
	shot string // screenshot directory
	// refuse makes the next confirm() dialogs answer Cancel (else OK);
	// dialogs counts them.
	refuse  atomic.Bool
	dialogs atomic.Int32
}

// answerDialogs answers the page's confirm() dialogs (leaving a screen
// with unsaved edits) as u.refuse says.
func (u *ui) answerDialogs() {
	dialogs := chromedp.Events(u.ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			u.dialogs.Add(1)
			_, _ = chromedp.Call(u.ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: !u.refuse.Load()})
		}
	}()
}

func (u *ui) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	u.t.Helper()
	if err := chromedp.Do(u.ctx, actions...); err != nil {
		u.t.Fatalf("%s: %v\npage text: %s", what, err, u.pageText())
	}
}

// pageText is the main element's text, for failure messages.
func (u *ui) pageText() string {
	ctx, cancel := context.WithTimeout(u.ctx, 5*time.Second)
	defer cancel()
	s, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.querySelector('main')?.innerText ?? ''`))
	return s
}

// eval runs JavaScript and decodes its result into out (nil to ignore).
func (u *ui) eval(js string, out any) {
	u.t.Helper()
	raw, err := chromedp.Run(u.ctx, chromedp.Evaluate[json.RawMessage](js))
	if err != nil {
		u.t.Fatalf("evaluating %s: %v\npage text: %s", js, err, u.pageText())
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			u.t.Fatalf("evaluating %s: result %s: %v", js, raw, err)
		}
	}
}

// waitFor polls a JavaScript condition until it holds.
func (u *ui) waitFor(what, cond string) {
	u.t.Helper()
	ctx, cancel := context.WithTimeout(u.ctx, 20*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](cond, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(20*time.Second))); err != nil {
		u.t.Fatalf("waiting for %s: %v\npage text: %s", what, err, u.pageText())
	}
}

// waitText waits until the element's text contains s.
func (u *ui) waitText(sel, s string) {
	u.t.Helper()
	u.waitFor(fmt.Sprintf("%s to show %q", sel, s),
		fmt.Sprintf(`(document.querySelector(%q)?.textContent ?? '').includes(%q)`, sel, s))
}

// text returns an element's text.
func (u *ui) text(sel string) string {
	u.t.Helper()
	var s string
	u.eval(fmt.Sprintf(`document.querySelector(%q)?.textContent ?? ''`, sel), &s)
	return s
}

// setValue sets a control's value and fires the events a person's edit
// fires (input and change).
func (u *ui) setValue(sel, v string) {
	u.t.Helper()
	var ok bool
	u.eval(fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false;
		e.value = %q; e.dispatchEvent(new Event('input', {bubbles: true})); e.dispatchEvent(new Event('change', {bubbles: true})); return true })()`, sel, v), &ok)
	if !ok {
		u.t.Fatalf("no element %s", sel)
	}
}

func (u *ui) click(sel string) {
	u.t.Helper()
	u.run("clicking "+sel, chromedp.Click(chromedp.CSS(sel), chromedp.NodeVisible))
}

// screenshot saves the whole page as console-<name>.jpg.
func (u *ui) screenshot(name string) {
	u.t.Helper()
	img, err := chromedp.Run(u.ctx, chromedp.FullScreenshot(75))
	if err != nil {
		u.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(u.shot, "console-"+name+".jpg"), img, 0o644); err != nil {
		u.t.Fatal(err)
	}
}

// labelled checks that every visible control of the page has a label: the
// console must work with a screen reader and from the keyboard.
func (u *ui) labelled(screen string) {
	u.t.Helper()
	var unlabelled []string
	u.eval(`[...document.querySelectorAll('input, select, textarea, button')].filter(e => e.offsetParent !== null).filter(e => {
		if (e.labels && e.labels.length) return false;
		if (e.getAttribute('aria-label') || e.getAttribute('aria-labelledby')) return false;
		if (e.tagName === 'BUTTON' && e.textContent.trim()) return false;
		return true }).map(e => e.outerHTML.slice(0, 120))`, &unlabelled)
	if len(unlabelled) > 0 {
		u.t.Errorf("%s: controls without a label: %v", screen, unlabelled)
	}
}

// api calls the admin API directly, as the test's independent view.
func api(t *testing.T, base, method, path, token, body string, headers ...string) (int, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

const connPath = "/v1/spaces/" + space + "/audiences/" + audience + "/connections/" + dest

func TestConsole(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: runs in make test (needs chromium from deploy/local/install.sh)")
	}
	base, redisAddr := startIdsync(t, "")
	shots := os.Getenv("IDSYNC_TEST_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	}
	if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", shots)
	u := &ui{t: t, ctx: browser(t), base: base, shot: shots}
	u.answerDialogs()

	t.Run("headers", func(t *testing.T) {
		resp, err := http.Get(base + "/ui/")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		csp := resp.Header.Get("Content-Security-Policy")
		for _, want := range []string{"script-src 'self'", "frame-ancestors 'none'", "default-src 'none'"} {
			if !strings.Contains(csp, want) {
				t.Errorf("Content-Security-Policy %q lacks %q", csp, want)
			}
		}
		if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
			t.Errorf("Content-Security-Policy %q allows inline or eval", csp)
		}
	})

	// Sign in from the keyboard: type the token, press Enter.
	u.run("opening the console", chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#signin-token")))
	u.labelled("sign-in")
	u.screenshot("signin")
	u.run("typing a wrong token", chromedp.SendKeys(chromedp.CSS("#signin-token"), "not-a-token\r"))
	u.waitText("#signin .error", "not accepted")
	u.setValue("#signin-token", "")
	u.run("typing the token", chromedp.SendKeys(chromedp.CSS("#signin-token"), writeToken+"\r"))
	u.waitText("#who", "Signed in as alice (write scope)")
	var stored bool
	u.eval(`location.href.includes('`+writeToken+`') || document.cookie.includes('`+writeToken+`') || Object.values(localStorage).some(v => v.includes('`+writeToken+`'))`, &stored)
	if stored {
		t.Error("the token is in the URL, a cookie or localStorage")
	}

	// Create a Customized Facebook connection with three mappings.
	u.setValue("#audience-form input[name=space]", space)
	u.setValue("#audience-form input[name=audience]", audience)
	u.click("#audience-form button[type=submit]")
	u.waitText("#connections-results", "no connections yet")
	u.setValue("#new-connection input[name=destination]", dest)
	u.click("#new-connection button[type=submit]")
	u.waitText("main h1", "New connection")
	u.setValue("#editor select[name=destination_type]", "facebook_custom_audiences")
	u.setValue("#editor input[name=external_audience_id]", "23851234567890123")
	u.click("#editor input[name=setup][value=customized]")
	u.waitFor("identifier rows", `document.querySelectorAll('#mappings tbody tr').length > 0`)
	// Start from three rows of our own: remove the prefilled ones.
	u.eval(`(() => { let n = 0; while (document.querySelector('#mappings tbody tr button.link') && n++ < 20) document.querySelector('#mappings tbody tr button.link').click() })()`, nil)
	rows := []struct{ segment, key, strategy string }{
		{"email", "EMAIL", "all"},
		{"phone", "PHONE", "all"},
		{"user_id", "EXTERN_ID", "all"},
	}
	for i, r := range rows {
		u.click("#add-identifier")
		u.waitFor("a new row", fmt.Sprintf(`document.querySelectorAll('#mappings tbody tr').length === %d`, i+1))
		u.setValue(fmt.Sprintf("#mappings input[name=segment-%d]", i), r.segment)
		u.setValue(fmt.Sprintf("#mappings select[name=destination-%d]", i), r.key)
		u.setValue(fmt.Sprintf("#mappings select[name=strategy-%d]", i), r.strategy)
	}
	// The proposed key follows the identifier chosen.
	u.click("#add-identifier")
	u.waitFor("a fourth row", `document.querySelectorAll('#mappings tbody tr').length === 4`)
	u.setValue("#mappings input[name=segment-3]", "anonymous_id")
	u.setValue("#mappings input[name=segment-3]", "ios.idfa")
	var proposed string
	u.eval(`document.querySelector('#mappings select[name=destination-3]').value`, &proposed)
	if proposed != "MADID" {
		t.Errorf("destination key proposed for ios.idfa: %q, want MADID", proposed)
	}
	// An idfa without mobile ids: the API's message, at the row.
	u.waitText("#mappings tr[data-row='3']", "needs settings.send_mobile_ids=true")
	u.click("#editor input[name=send_mobile_ids]")
	// A fourth "all": the API's message, where it bites.
	u.setValue("#mappings select[name=strategy-3]", "all")
	u.waitText("#mappings tr[data-row='3']", "at most 3 identifiers may use strategy all (found 4)")
	u.labelled("editor")
	u.screenshot("editor-fourth-all")
	u.click("#mappings tr[data-row='3'] button.link")
	u.waitFor("three rows", `document.querySelectorAll('#mappings tbody tr').length === 3`)
	u.waitFor("the problem to clear", `!document.querySelector('#mappings').textContent.includes('at most 3')`)

	// Save: the first version is effective at once.
	u.click("#save")
	u.waitText("#confirm", "takes effect as soon as it is saved")
	u.run("confirming from the keyboard", chromedp.KeyEvent("\r"))
	u.waitText("#save-result", "Saved version 1: it is in effect now")
	if code, body := api(t, base, "GET", connPath, readToken, ""); code != 200 || body["active"] == nil {
		t.Fatalf("after saving: GET %d %v", code, body)
	}

	// Edit: email last added. The preview shows the last-added email's
	// SHA-256 in the Facebook row.
	u.setValue("#mappings select[name=strategy-0]", "last_added")
	var sample string
	u.eval(`document.querySelector('#sample').value`, &sample)
	wantHash, otherHashes := lastAddedEmailHash(t, sample)
	u.waitText("#preview-explain", "picked: the newest valid one (last added)")
	u.waitText("#preview-records table.rows", wantHash)
	for _, other := range otherHashes {
		if strings.Contains(u.text("#preview-records"), other) {
			t.Errorf("last added sends an older email too (%s)", other)
		}
	}
	u.waitText("#preview-explain", "picked: the newest valid one (last added)")
	u.waitText("#preview-explain", "dropped as invalid")
	u.screenshot("editor-preview")

	// Save the edit: it is pending, with its effective time and a countdown.
	u.click("#save")
	u.waitText("#confirm", "activation delay of 5 minutes")
	u.click("#confirm-ok")
	u.waitText("#save-result", "Saved version 2: it takes effect at")
	u.waitText("#versions .pending", "version 2")
	u.waitFor("the countdown", `/in [0-9]:[0-9][0-9]/.test(document.querySelector('#versions .pending .countdown')?.textContent ?? '')`)
	_, got := api(t, base, "GET", connPath, readToken, "")
	pending, _ := got["pending"].(map[string]any)
	if pending == nil || pending["version"] != float64(2) {
		t.Fatalf("after the edit: %v", got)
	}
	eff, _ := time.Parse(time.RFC3339, pending["effective_at"].(string))
	if !strings.Contains(u.text("#versions .pending"), eff.UTC().Format("2006-01-02 15:04:05")) {
		t.Errorf("pending line %q does not show the effective time %s", u.text("#versions .pending"), eff)
	}
	u.screenshot("editor-pending")

	// Connections list: active and pending with the countdown.
	u.run("connections", chromedp.Navigate(base+"/ui/#/connections?space="+space+"&audience="+audience))
	u.waitText("#connections", dest)
	u.waitFor("the list countdown", `/in [0-9]:[0-9][0-9]/.test(document.querySelector('#connections .countdown')?.textContent ?? '')`)
	u.labelled("connections")
	u.screenshot("connections")

	// A conflicting edit by someone else is shown, not overwritten.
	u.run("editor", chromedp.Navigate(base+"/ui/#/edit?space="+space+"&audience="+audience+"&destination="+dest))
	u.waitText("#versions", "Pending")
	theirs := `{"destination_type":"facebook_custom_audiences","external_audience_id":"999","setup":"default"}`
	if code, body := api(t, base, "PUT", connPath, writeToken, theirs, "If-Match", "2"); code != 200 {
		t.Fatalf("someone else's edit: %d %v", code, body)
	}
	u.setValue("#editor input[name=external_audience_id]", "111")
	u.click("#save")
	u.click("#confirm-ok")
	u.waitText("#conflict", "alice saved version 3")
	u.waitText("#conflict", "external_audience_id")
	u.screenshot("editor-conflict")
	if _, got := api(t, base, "GET", connPath, readToken, ""); got["pending"].(map[string]any)["config"].(map[string]any)["external_audience_id"] != "999" {
		t.Fatalf("the other edit was overwritten: %v", got)
	}
	u.click("#load-theirs")
	u.waitFor("their version loaded", `document.querySelector('#editor input[name=external_audience_id]').value === '999'`)

	// History: who and when, a diff, and restore version 1.
	u.run("history", chromedp.Navigate(base+"/ui/#/history?space="+space+"&audience="+audience+"&destination="+dest))
	u.waitText("#history", "alice")
	u.setValue("select[name=from]", "1")
	u.setValue("select[name=to]", "2")
	u.waitText("#diff", "removed")
	u.waitText("#diff", "identifier email → EMAIL, last added")
	u.labelled("history")
	u.screenshot("history")
	u.click("button.restore[data-version='1']")
	u.waitText("#confirm", "activation delay")
	u.click("#confirm-ok")
	u.waitText("#versions .pending", "version 4")
	_, got = api(t, base, "GET", connPath, readToken, "")
	_, hist := api(t, base, "GET", connPath+"/history", readToken, "")
	entries := hist["entries"].([]any)
	v1 := entries[len(entries)-1].(map[string]any)["new"]
	restored := got["pending"].(map[string]any)["config"]
	if fmt.Sprint(v1) != fmt.Sprint(restored) {
		t.Errorf("restored configuration %v, want version 1's %v", restored, v1)
	}

	// Catalog.
	u.run("catalog", chromedp.Navigate(base+"/ui/#/catalog"))
	u.waitText("main", "google_ads_remarketing_lists")
	u.waitText("main", "hashed_phone_number")
	u.screenshot("catalog")

	// Google: the keys offered follow the upload key type, and a key that no
	// longer fits is named at its row in the API's words.
	u.run("google editor", chromedp.Navigate(base+"/ui/#/edit?space="+space+"&audience="+audience+"&destination=gads_console&new=1"))
	u.waitFor("the editor", `!!document.querySelector('#editor select[name=destination_type]')`)
	u.setValue("#editor select[name=destination_type]", "google_ads_remarketing_lists")
	u.waitFor("the upload key type", `!!document.querySelector('#editor select[name=upload_key_type]')`)
	u.click("#editor input[name=setup][value=customized]")
	u.waitFor("rows", `document.querySelectorAll('#mappings tbody tr').length > 0`)
	var offered []string
	u.eval(`[...document.querySelectorAll('#mappings select[name=destination-0] option')].map(o => o.value)`, &offered)
	if strings.Join(offered, ",") != "hashed_email,hashed_phone_number" {
		t.Errorf("keys offered for CONTACT_INFO: %v", offered)
	}
	// From the keyboard: the arrow keys change the upload key type, the form
	// is redrawn, and the focus stays on the control.
	u.run("focusing the upload key type", chromedp.Focus(chromedp.CSS("#editor select[name=upload_key_type]")))
	u.run("arrow down", chromedp.KeyEvent(kb.ArrowDown))
	u.waitFor("the next upload key type", `document.querySelector('#editor select[name=upload_key_type]').value !== 'CONTACT_INFO'`)
	var focused string
	u.eval(`document.activeElement?.name ?? ''`, &focused)
	if focused != "upload_key_type" {
		t.Errorf("after changing the upload key type from the keyboard, focus is on %q", focused)
	}
	u.setValue("#editor select[name=upload_key_type]", "CRM_ID")
	u.waitText("#mappings tr[data-row='0']", "must be one of third_party_user_id for upload_key_type CRM_ID")
	// Removing a row moves the focus to the row that took its place.
	u.click("#add-identifier")
	u.waitFor("two rows", `document.querySelectorAll('#mappings tbody tr').length === 2`)
	u.run("focusing remove", chromedp.Focus(chromedp.CSS("#mappings tr[data-row='0'] button.link")))
	u.run("pressing enter", chromedp.KeyEvent(kb.Enter))
	u.waitFor("one row", `document.querySelectorAll('#mappings tbody tr').length === 1`)
	u.eval(`document.activeElement?.name ?? ''`, &focused)
	if focused != "segment-0" {
		t.Errorf("after removing a row, focus is on %q, want the next row's identifier", focused)
	}

	// Leaving unsaved edits asks first; Cancel keeps them.
	u.setValue("#editor input[name=external_audience_id]", "unsaved-123")
	u.refuse.Store(true)
	before := u.dialogs.Load()
	u.run("leaving", chromedp.Navigate(base+"/ui/#/catalog"))
	for deadline := time.Now().Add(10 * time.Second); u.dialogs.Load() == before; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("leaving unsaved edits did not ask")
		}
	}
	u.waitFor("the editor to stay", `location.hash.startsWith('#/edit') && document.querySelector('#editor input[name=external_audience_id]')?.value === 'unsaved-123'`)
	u.refuse.Store(false)

	// Hostile text renders as text: an audience id, a destination key, an
	// identifier value.
	const evil = `<img src=x onerror="window.__xss=1">`
	u.run("connections", chromedp.Navigate(base+"/ui/#/connections"))
	u.waitFor("the audience form", `!!document.querySelector('#audience-form')`)
	u.setValue("#audience-form input[name=audience]", evil)
	u.setValue("#audience-form input[name=space]", space)
	u.click("#audience-form button[type=submit]")
	u.waitText("#connections-results", "audience_id")
	u.waitText("#connections-results h2", evil)
	var imgs int
	u.eval(`document.querySelectorAll('img').length`, &imgs)
	if imgs != 0 {
		t.Errorf("a hostile audience id became markup: %d img elements", imgs)
	}
	u.run("webhook editor", chromedp.Navigate(base+"/ui/#/edit?space="+space+"&audience="+audience+"&destination=hook_evil&new=1"))
	u.waitFor("the editor", `!!document.querySelector('#editor select[name=destination_type]')`)
	u.setValue("#editor select[name=destination_type]", "webhook")
	u.click("#editor input[name=setup][value=customized]")
	u.waitFor("rows", `document.querySelectorAll('#mappings tbody tr').length > 0`)
	u.setValue("#mappings input[name=destination-0]", evil)
	u.waitText("#mappings tr[data-row='0']", "must match")
	var ev map[string]any
	if err := json.Unmarshal([]byte(sample), &ev); err != nil {
		t.Fatal(err)
	}
	ids := ev["external_ids"].([]any)
	ids[0].(map[string]any)["id"] = evil
	evBytes, _ := json.Marshal(ev)
	u.setValue("#mappings input[name=destination-0]", "userId")
	u.setValue("#sample", string(evBytes))
	u.waitText("#preview-explain", evil)
	u.eval(`document.querySelectorAll('img').length`, &imgs)
	if imgs != 0 {
		t.Errorf("a hostile identifier became markup: %d img elements", imgs)
	}

	// A hostile store: an audit entry whose actor and destination key are
	// markup, written into Redis behind the API's back, shows as text.
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	entry, _ := json.Marshal(map[string]any{"version": 99, "action": "put", "actor": evil, "at": time.Now().UTC(), "effective_at": time.Now().UTC(),
		"old": nil, "new": map[string]any{"destination_type": "webhook", "setup": "customized", "settings": map[string]any{"send_track": true},
			"identifiers": []any{map[string]any{"segment": "email", "destination": evil, "strategy": "all"}}}})
	if err := rdb.LPush(context.Background(), "idsync:{"+space+"/"+audience+"}:audit:"+dest, entry).Err(); err != nil {
		t.Fatal(err)
	}
	u.run("history", chromedp.Navigate(base+"/ui/#/history?space="+space+"&audience="+audience+"&destination="+dest))
	u.waitText("#history", evil)
	u.waitText("#diff", "identifier email → "+evil+", all")
	u.eval(`document.querySelectorAll('img').length`, &imgs)
	if imgs != 0 {
		t.Errorf("a hostile stored audit entry became markup: %d img elements", imgs)
	}

	// A read-scope token sees everything and can save nothing: the controls
	// are disabled, and a forced click is refused by the API anyway.
	u.click("#who button")
	u.waitFor("the sign-in form", `!!document.querySelector('#signin-token')`)
	u.run("signing in read-only", chromedp.SendKeys(chromedp.CSS("#signin-token"), readToken+"\r"))
	u.waitText("#who", "viewer (read scope)")
	u.run("editor as viewer", chromedp.Navigate(base+"/ui/#/edit?space="+space+"&audience="+audience+"&destination="+dest))
	u.waitText("#versions", "Pending")
	var disabled bool
	u.eval(`document.querySelector('#save').disabled && document.querySelector('#editor fieldset').disabled`, &disabled)
	if !disabled {
		t.Error("a read-scope token can use the save button or the form")
	}
	u.waitText("#read-only-note", "read scope")
	u.waitText("#preview-records", "topic")
	u.screenshot("read-only")
	u.eval(`(() => { const b = document.querySelector('#save'); b.disabled = false; b.click() })()`, nil)
	u.click("#confirm-ok")
	u.waitText("#save-result", "HTTP 403")
	if _, got := api(t, base, "GET", connPath, readToken, ""); got["pending"].(map[string]any)["version"] != float64(4) {
		t.Errorf("a read-scope save changed the connection: %v", got)
	}
}

// waitAPI polls cond until it holds, failing the test after within.
func waitAPI(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not within %s", what, within)
		}
	}
}

// lastAddedEmailHash is the SHA-256 Facebook receives for the sample's
// newest email: trimmed, lower-cased, hashed.
func lastAddedEmailHash(t *testing.T, sample string) (string, []string) {
	t.Helper()
	var ev struct {
		ExternalIDs []struct {
			Type      string    `json:"type"`
			ID        string    `json:"id"`
			CreatedAt time.Time `json:"created_at"`
		} `json:"external_ids"`
	}
	if err := json.Unmarshal([]byte(sample), &ev); err != nil {
		t.Fatalf("the sample is not JSON: %v", err)
	}
	hash := func(email string) string {
		sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSpace(email))))
		return hex.EncodeToString(sum[:])
	}
	newest, at := "", time.Time{}
	var all []string
	for _, x := range ev.ExternalIDs {
		if x.Type != "email" {
			continue
		}
		all = append(all, hash(x.ID))
		if !x.CreatedAt.Before(at) {
			newest, at = x.ID, x.CreatedAt
		}
	}
	if newest == "" || len(all) < 2 {
		t.Fatal("the sample needs several emails")
	}
	var others []string
	for _, h := range all {
		if h != hash(newest) {
			others = append(others, h)
		}
	}
	return hash(newest), others
}

// TestConsoleActivation runs with an activation delay of a few seconds, to
// see what happens when a pending version takes effect while the console
// is open, and around deletions: the versions box follows and unsaved edits
// stay; a screen left behind does not come back; a create never replaces a
// connection made meanwhile; a deleted connection is restored on condition
// that nothing changed since the history was read.
func TestConsoleActivation(t *testing.T) {
	if testing.Short() {
		t.Skip("browser test: runs in make test (needs chromium from deploy/local/install.sh)")
	}
	base, _ := startIdsync(t, "connections:\n  activation_delay: 4s\n  retain_superseded: 4s\n")
	u := &ui{t: t, ctx: browser(t), base: base, shot: t.TempDir()}
	u.answerDialogs()
	u.run("opening the console", chromedp.Navigate(base+"/ui/"), chromedp.WaitVisible(chromedp.CSS("#signin-token")))
	u.run("signing in", chromedp.SendKeys(chromedp.CSS("#signin-token"), writeToken+"\r"))
	u.waitText("#who", "alice")

	hook := func(event string) string {
		return `{"destination_type":"webhook","settings":{"enter_event":"` + event + `"}}`
	}
	path := "/v1/spaces/" + space + "/audiences/" + audience + "/connections/"
	if code, body := api(t, base, "PUT", path+"timer", writeToken, hook("v1")); code != 201 {
		t.Fatalf("creating: %d %v", code, body)
	}
	if code, body := api(t, base, "PUT", path+"timer", writeToken, hook("v2"), "If-Match", "1"); code != 200 {
		t.Fatalf("editing: %d %v", code, body)
	}

	// A pending version takes effect while a person edits: the versions box
	// says so, the form keeps the unsaved edit.
	u.run("editor", chromedp.Navigate(base+"/ui/#/edit?space="+space+"&audience="+audience+"&destination=timer"))
	u.waitText("#versions", "Pending: version 2")
	u.setValue("#editor input[name=enter_event]", "unsaved edit")
	u.waitFor("version 2 in effect", `(document.querySelector('#versions')?.textContent ?? '').includes('Active: version 2') && !document.querySelector('#versions .pending')`)
	var v string
	u.eval(`document.querySelector('#editor input[name=enter_event]').value`, &v)
	if v != "unsaved edit" {
		t.Errorf("when version 2 took effect the form lost its edit: %q", v)
	}

	// A screen left behind does not come back when its countdown ends.
	if code, _ := api(t, base, "PUT", path+"timer", writeToken, hook("v3"), "If-Match", "2"); code != 200 {
		t.Fatal("editing again")
	}
	u.run("editor again", chromedp.Navigate(base+"/ui/#/edit?space="+space+"&audience="+audience+"&destination=timer&again=1"))
	u.waitText("#versions", "Pending: version 3")
	u.run("catalog", chromedp.Navigate(base+"/ui/#/catalog"))
	u.waitText("main h1", "Destination types")
	// Once version 3 is in effect, the left screen's countdown would have
	// fired within a second and a half (a 1 s tick, then 0.5 s).
	waitAPI(t, 30*time.Second, "version 3 in effect", func() bool {
		_, got := api(t, base, "GET", path+"timer", readToken, "")
		return got["pending"] == nil
	})
	time.Sleep(1500 * time.Millisecond)
	if h1 := u.text("main h1"); h1 != "Destination types" {
		t.Errorf("after the countdown of a screen left behind, the page shows %q", h1)
	}

	// A create never replaces a connection someone made meanwhile.
	u.run("new", chromedp.Navigate(base+"/ui/#/edit?space="+space+"&audience="+audience+"&destination=race&new=1"))
	u.waitText("main h1", "New connection")
	u.setValue("#editor select[name=destination_type]", "webhook")
	if code, _ := api(t, base, "PUT", path+"race", writeToken, hook("theirs")); code != 201 {
		t.Fatal("their create")
	}
	u.click("#save")
	u.click("#confirm-ok")
	u.waitText("#conflict", "alice saved version 1")
	if _, got := api(t, base, "GET", path+"race", readToken, ""); got["active"].(map[string]any)["config"].(map[string]any)["settings"].(map[string]any)["enter_event"] != "theirs" {
		t.Errorf("the console's create replaced theirs: %v", got)
	}

	// Restore a deleted connection.
	if code, _ := api(t, base, "DELETE", path+"race", writeToken, "", "If-Match", "1"); code != 200 {
		t.Fatal("deleting")
	}
	waitAPI(t, 30*time.Second, "the deletion to take effect", func() bool {
		code, _ := api(t, base, "GET", path+"race", readToken, "")
		return code == 404
	})
	u.run("history", chromedp.Navigate(base+"/ui/#/history?space="+space+"&audience="+audience+"&destination=race"))
	u.waitText("#history", "deleted")
	u.click("button.restore[data-version='1']")
	u.waitText("#confirm", "first version")
	u.click("#confirm-ok")
	u.waitText("#versions", "Active: version 3")
	if _, got := api(t, base, "GET", path+"race", readToken, ""); got["active"].(map[string]any)["config"].(map[string]any)["settings"].(map[string]any)["enter_event"] != "theirs" {
		t.Errorf("the restored configuration is not version 1's: %v", got)
	}
}
