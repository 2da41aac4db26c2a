/* The course's JupyterLab plugin, written by hand (no build step, no npm, no network).
 *
 * Problem: after "Run All" JupyterLab leaves the student at the last cell, below the cells it blanked to
 * "[ ]", while the first failing check is somewhere above, out of sight (upstream: jupyterlab/jupyterlab#8714,
 * #5790, #9786 ask for exactly this). This plugin waits until a Run All (menu, toolbar or command; with or
 * without a restart) has finished, then makes the first cell with an error the active cell and scrolls it to
 * the middle of the window.
 *
 * How it loads: JupyterLab loads a prebuilt ("federated") extension from
 * <labextensions dir>/<name>/package.json -> jupyterlab._build.load, a script that must register a webpack
 * module-federation container in window._JUPYTERLAB[<name>] with init() and get(module). The container below
 * is that interface by hand: it shares no modules (the plugin requires no token) and returns one plugin.
 * `make lab` and `make instructor` put jupyter/share on JUPYTER_PATH; tests/browser/test_jupyterlab.py checks it.
 */
(function () {
  "use strict";

  var NAME = "transformer-course-labs";
  var RUN_ALL = /(^|:)(run-all|run-all-cells|restart-run-all|restart-and-run-all|run-all-below)$/;

  function firstErrorIndex(notebook) {
    var cells = notebook.widgets || [];
    for (var i = 0; i < cells.length; i++) {
      var model = cells[i].model;
      if (!model || model.type !== "code" || !model.outputs) continue;
      for (var j = 0; j < model.outputs.length; j++) {
        var output = model.outputs.get(j);
        if (output && output.type === "error") return i;
      }
    }
    return -1;
  }

  function showFirstError(panel) {
    var notebook = panel && panel.content;
    if (!notebook || !notebook.widgets) return;
    var index = firstErrorIndex(notebook);
    if (index < 0) return;
    notebook.activeCellIndex = index;
    var cell = notebook.widgets[index];
    var done = function () {
      // the error output, not the (possibly long) code above it, is what the student must see
      var target = cell.node.querySelector(".jp-OutputArea-child:last-child") || cell.node;
      target.scrollIntoView({block: "center"});
      cell.node.setAttribute("data-course-failure", "shown");
    };
    if (typeof notebook.scrollToItem === "function") {
      Promise.resolve(notebook.scrollToItem(index, "center")).then(done, done);
    } else {
      done();
    }
  }

  function codeCells(panel) {
    var notebook = panel && panel.content;
    return ((notebook && notebook.widgets) || []).filter(function (c) {
      return c.model && c.model.type === "code";
    });
  }

  function maxCount(panel) {
    return codeCells(panel).reduce(function (m, c) { return Math.max(m, c.model.executionCount || 0); }, 0);
  }

  // Wait until the run has started (a cell queued or running, or a new execution count) and then finished
  // (no cell queued or running), whatever the command's promise does (some resolve before the run ends),
  // then show the first error. A restart asks first, so the start may come late: wait up to 10 minutes.
  function afterRunAll(panel) {
    var before = maxCount(panel), started = false, t0 = Date.now();
    var timer = setInterval(function () {
      if (!panel || panel.isDisposed) { clearInterval(timer); return; }
      var running = codeCells(panel).some(function (c) { return c.model.executionState === "running"; });
      if (running) { started = true; return; }
      if (started || maxCount(panel) > before) {
        clearInterval(timer);
        showFirstError(panel);
      } else if (Date.now() - t0 > 600000) {
        clearInterval(timer);
      }
    }, 200);
  }

  var plugin = {
    id: NAME + ":show-failure-after-run-all",
    description: "After Run All stops at a failing cell, scroll that cell into view.",
    autoStart: true,
    activate: function (app) {
      app.commands.commandExecuted.connect(function (sender, args) {
        if (RUN_ALL.test(args.id)) afterRunAll(app.shell.currentWidget);
      });
    }
  };

  var container = {
    init: function () { return Promise.resolve(); },
    get: function (module) {
      if (module !== "./extension") return Promise.reject(new Error(NAME + " has no module " + module));
      return Promise.resolve(function () { return {__esModule: true, default: [plugin]}; });
    }
  };
  window._JUPYTERLAB = window._JUPYTERLAB || {};
  window._JUPYTERLAB[NAME] = container;
})();
