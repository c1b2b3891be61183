"""Sphinx extension: two repairs to the scripts of each page, found by the browser checks.

1. Under Jupyter Book 1.0.4 sphinx-thebe's configuration script (`const THEBE_JS_URL =
   ...`) reaches every page twice (once with filename None, once with ''), and the second
   copy raises "Identifier 'THEBE_JS_URL' has already been declared". Identical scripts
   are kept once.
2. The Jupyter widgets HTML manager (embed-amd.js) loads its icon fonts from beside the
   URL that require.js gives its module, which is relative to the page unless require.js
   is told a base URL. The base is set to the copy in _static, relative to each page,
   between require.js and embed-amd.js.
3. The widget controls typeset their labels through MathJax 2's `MathJax.Hub.Queue`;
   the site uses MathJax 3, which has no Hub, so every labelled widget raised "Cannot read
   properties of undefined (reading 'Queue')". A small Hub that forwards to MathJax 3's
   typesetPromise is installed on the MathJax object before the widgets render.
"""
from sphinx.builders.html._assets import _JavaScript


NPM_COPIES = "_static/vendor/npm/"
MATHJAX2_HUB = """(function () {
  function install() {
    if (window.MathJax && !window.MathJax.Hub) {
      window.MathJax.Hub = {Queue: function (job) {
        if (window.MathJax.typesetPromise && job && job[2]) { window.MathJax.typesetPromise([job[2]]); }
      }};
    }
  }
  install();
  document.addEventListener("DOMContentLoaded", install);
  window.addEventListener("load", install);
})();"""


def _repair_scripts(app, pagename, templatename, context, doctree):
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for script in scripts:
        key = (script.filename or "", tuple(sorted((k, str(v)) for k, v in script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique
    for index, script in enumerate(scripts):
        if str(script.filename or "").endswith("embed-amd.js"):
            base = context["pathto"](NPM_COPIES, 1)
            scripts.insert(index, _JavaScript(None, priority=script.priority,
                                              body=f'require.config({{baseUrl: "{base}"}});'))
            scripts.insert(index, _JavaScript(None, priority=script.priority, body=MATHJAX2_HUB))
            break


def setup(app):
    app.connect("html-page-context", _repair_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
