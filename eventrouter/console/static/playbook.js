// The playbook page (templates/integration.html) with JavaScript on. The playbook textarea stays the form's
// field: a CodeMirror editor (static/vendor/codemirror.js, `window.CM`) is shown in its place, writes every
// change back to it and fires its `input` event, which the Try button's hx-trigger turns into the test
// panel's request (htmx). The problems of each answer are marked on their lines.
// The editor lives in a shadow root: there CodeMirror puts its styles in an adopted stylesheet, which the
// Content-Security-Policy (style-src 'self') allows, where in the document it would add a <style> element,
// which the policy refuses.
(function () {
  "use strict";
  var CM = window.CM;
  var field = document.getElementById("playbook");
  if (!CM || !field) { return; }

  var host = document.createElement("div");
  host.className = "code-editor";
  field.before(host);
  field.hidden = true;
  var root = host.attachShadow({mode: "open"});
  var label = document.querySelector('label[for="playbook"]');
  var view = new CM.EditorView({
    root: root,
    parent: root,
    doc: field.value,
    extensions: [
      CM.lineNumbers(), CM.highlightActiveLineGutter(), CM.history(), CM.drawSelection(), CM.indentOnInput(),
      CM.syntaxHighlighting(CM.defaultHighlightStyle, {fallback: true}), CM.bracketMatching(),
      CM.highlightActiveLine(), CM.lintGutter(), CM.yaml(),
      // Tab indents; Escape then Tab leaves the editor (CodeMirror's own way out)
      CM.keymap.of(CM.defaultKeymap.concat(CM.historyKeymap, [CM.indentWithTab])),
      CM.EditorState.readOnly.of(field.readOnly),
      CM.EditorView.contentAttributes.of({"aria-label": label ? label.textContent : "Playbook",
                                         "aria-readonly": String(field.readOnly)}),
      CM.EditorView.theme({
        "&": {height: "28rem", fontSize: "13px", backgroundColor: "#fff"},
        ".cm-scroller": {fontFamily: "ui-monospace, monospace", lineHeight: "1.4"},
        // the lint package draws these with data: images, which img-src 'self' refuses: drawn in CSS instead
        ".cm-lintRange-error": {backgroundImage: "none", textDecoration: "underline wavy #b3261e"},
        ".cm-lint-marker-error": {content: "normal", borderRadius: "50%", backgroundColor: "#b3261e",
                                  width: ".6em", height: ".6em", margin: ".2em"}
      }),
      CM.EditorView.updateListener.of(function (update) {
        if (!update.docChanged) { return; }
        field.value = update.state.doc.toString();
        field.dispatchEvent(new Event("input", {bubbles: true}));
      })
    ]
  });
  if (label) { label.addEventListener("click", function () { view.focus(); }); }

  // A typed event replaces the chosen sample (the server tries the sample when one is chosen).
  var sample = document.getElementById("sample");
  var event = document.getElementById("event");
  if (sample && event) { event.addEventListener("input", function () { sample.value = ""; }); }

  // The node a problem's path names ("integrations[0].playbook.events["Order Completed"].enrich: ..."):
  // the deepest key or list item of the path found in the editor's syntax tree.
  function nodeOf(path) {
    var node = null;
    var at = CM.syntaxTree(view.state).topNode.getChild("Document");
    var step;
    var steps = /\["((?:[^"\\]|\\.)*)"\]|\[(\d+)\]|\.?([^.[\]]+)/g;
    while (at && (step = steps.exec(path))) {
      var inner = valueOf(at);
      if (!inner) { break; }
      at = step[2] !== undefined ? inner.getChildren("Item")[Number(step[2])]
        : pairOf(inner, step[3] !== undefined ? step[3] : step[1].replace(/\\(.)/g, "$1"));
      node = at ? (at.getChild("Key") || at) : node;
    }
    return node;
  }

  function valueOf(node) {  // the mapping or sequence a pair, an item or the document holds
    for (var child = node.lastChild; child; child = child.prevSibling) {
      if (/Mapping|Sequence/.test(child.name)) { return child; }
    }
    return null;
  }

  function pairOf(mapping, key) {
    return mapping.getChildren("Pair").find(function (pair) {
      var name = pair.getChild("Key");
      return name && view.state.sliceDoc(name.from, name.to).replace(/^(["'])(.*)\1$/, "$2") === key;
    });
  }

  function diagnosticOf(problem) {
    var doc = view.state.doc;
    var yamlError = /line (\d+), column \d+/.exec(problem);
    if (yamlError) {
      var line = doc.line(Math.min(Number(yamlError[1]), doc.lines));
      return {from: line.from, to: line.to, severity: "error", message: problem};
    }
    var path = /^integrations\[\d+\]\.playbook\.(.+?): /.exec(problem);
    var node = path && nodeOf(path[1]);
    return node ? {from: node.from, to: doc.lineAt(node.from).to, severity: "error", message: problem} : null;
  }

  function markProblems() {
    var items = document.querySelectorAll("#trial-result .problems li");
    var found = Array.prototype.map.call(items, function (li) { return diagnosticOf(li.textContent); });
    view.dispatch(CM.setDiagnostics(view.state, found.filter(Boolean)));
  }

  document.addEventListener("htmx:afterSettle", markProblems);
  markProblems();
})();
