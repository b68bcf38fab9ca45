// The parts of CodeMirror 6 the playbook editor uses (static/playbook.js), bundled by esbuild into one
// script that sets `window.CM` (static/vendor/codemirror.js): one file to serve, no module loader.
export { defaultKeymap, history, historyKeymap, indentWithTab } from "@codemirror/commands";
export { yaml } from "@codemirror/lang-yaml";
export { bracketMatching, defaultHighlightStyle, indentOnInput, syntaxHighlighting, syntaxTree }
  from "@codemirror/language";
export { lintGutter, setDiagnostics } from "@codemirror/lint";
export { EditorState } from "@codemirror/state";
export { drawSelection, EditorView, highlightActiveLine, highlightActiveLineGutter, keymap, lineNumbers }
  from "@codemirror/view";
