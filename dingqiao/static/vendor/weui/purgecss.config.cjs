// PurgeCSS settings that cut weui.min.css (the whole of WeUI) down to weui.subset.min.css, the part our pages
// use; base.html links the subset. Run from the repository root (see ../VERSIONS.md for the exact command).
// Classes that only scripts add, and whole components other engineers build on (dialogs, action sheets,
// masks, toasts, half-screen dialogs, loading), are kept whole even where no template names them yet.
// The rules for WeUI's theme switches (data-weui-theme="dark", data-weui-mode="care") go: nothing sets them.
// Its automatic dark mode (prefers-color-scheme) stays as it was.
module.exports = {
  css: ["dingqiao/static/vendor/weui/weui.min.css"],
  content: ["dingqiao/templates/**/*.html", "dingqiao/static/js/**/*.js", "dingqiao/**/*.py"],
  safelist: {
    standard: ["html", "body", /^wx-root$/],
    greedy: [
      /^weui-(dialog|actionsheet|mask|toast|half-screen-dialog|loading)/,
    ],
  },
  fontFace: false,
  keyframes: false,
  variables: false,
};
