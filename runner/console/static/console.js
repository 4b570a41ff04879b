/* Runbook Manager console: a little progressive enhancement. Every page also works without it. */
(function () {
  "use strict";

  function csrfToken() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  }

  /* ---- the Steps editor: add, move and delete steps in the page, then Save sends them in order ---- */

  function initEditor(form) {
    var list = form.querySelector("#step-list");
    var template = document.getElementById("step-template");
    var note = form.querySelector(".unsaved-note");

    function renumber() {
      var steps = list.querySelectorAll(":scope > li[data-step]");
      steps.forEach(function (li, i) {
        var fix = function (value) { return value.replace(/steps-(\d+|__i__)(?=-|$)/g, "steps-" + i); };
        li.id = "f-steps-" + i;
        li.querySelectorAll("[name], [id], [for], [aria-describedby]").forEach(function (el) {
          ["name", "id", "for", "aria-describedby"].forEach(function (attr) {
            if (el.hasAttribute(attr)) { el.setAttribute(attr, fix(el.getAttribute(attr))); }
          });
        });
        li.querySelectorAll("button[data-op]").forEach(function (button) { button.value = button.dataset.op + "-" + i; });
      });
      var empty = document.getElementById("no-steps");
      if (empty) { empty.hidden = steps.length > 0; }
    }

    function markUnsaved() { if (note) { note.hidden = false; } }

    form.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-op]");
      if (!button) { return; }
      event.preventDefault();
      var op = button.dataset.op;
      var li = button.closest("li[data-step]");
      if (op === "add") {
        var fresh = template.content.firstElementChild.cloneNode(true);
        list.appendChild(fresh);
        renumber();
        fresh.querySelector("input").focus();
      } else if (op === "up" && li.previousElementSibling) {
        list.insertBefore(li, li.previousElementSibling);
        renumber();
        button.focus();
      } else if (op === "down" && li.nextElementSibling) {
        list.insertBefore(li.nextElementSibling, li);
        renumber();
        button.focus();
      } else if (op === "delete") {
        var next = li.nextElementSibling || li.previousElementSibling;
        li.remove();
        renumber();
        (next ? next.querySelector('button[data-op="delete"]') : form.querySelector('button[data-op="add"]')).focus();
      } else {
        return;
      }
      markUnsaved();
    });

    form.addEventListener("change", function (event) {
      if (event.target.matches("[data-action-type]")) {
        var fieldset = event.target.closest("fieldset");
        fieldset.querySelectorAll("[data-action]").forEach(function (block) {
          block.hidden = block.dataset.action !== event.target.value;
        });
      }
      markUnsaved();
    });

    form.addEventListener("input", function (event) {
      if (event.target.matches('input[name$="-title"]')) {
        var li = event.target.closest("li[data-step]");
        if (li) { li.querySelector(".step-title").textContent = event.target.value || "New step"; }
      }
      markUnsaved();
    });

    form.addEventListener("submit", renumber);
  }

  /* ---- the run view: poll the job, swap in the parts that changed, act without a reload ---- */

  function initRun(root) {
    var url = root.dataset.liveUrl;
    var every = parseInt(root.dataset.pollMs, 10) || 1500;
    var terminal = root.hasAttribute("data-terminal");
    var timer = null;
    var errorBox = document.getElementById("live-error");
    var messageBox = document.getElementById("live-message");

    function showError(text) {
      errorBox.textContent = text;
      errorBox.hidden = !text;
    }

    function typing(section) {
      var active = document.activeElement;
      if (section.contains(active) && active.matches("input, textarea")) { return true; }
      return Array.prototype.some.call(section.querySelectorAll('input[name="note"]'), function (input) {
        return input.value.trim() !== "";
      });
    }

    function apply(data, force) {
      var holder = document.createElement("template");
      holder.innerHTML = data.html;
      holder.content.querySelectorAll("[data-live]").forEach(function (fresh) {
        var current = document.getElementById(fresh.id);
        if (!current || current.outerHTML === fresh.outerHTML || (!force && typing(current))) { return; }
        var focused = current.contains(document.activeElement) ? document.activeElement.id : null;
        current.replaceWith(fresh);
        if (focused !== null) {
          var again = focused && document.getElementById(focused);
          var next = again || document.querySelector(".run-steps .current button") || fresh;
          next.focus();
        }
      });
      terminal = data.terminal;
      root.toggleAttribute("data-terminal", terminal);
    }

    function schedule() {
      if (!terminal && timer === null) { timer = window.setTimeout(poll, every); }
    }

    function poll() {
      timer = null;
      fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" })
        .then(function (response) {
          if (response.status === 401) { window.location.reload(); return null; }
          return response.json().then(function (data) {
            if (!response.ok) { showError(data.title + ": " + data.detail); } else { showError(""); apply(data, false); }
          });
        })
        .catch(function () { showError("Lost contact with the runner; trying again…"); })
        .then(schedule);
    }

    root.addEventListener("live-submit", function (event) {
      var form = event.detail.form;
      var submitter = event.detail.submitter;
      var action = (submitter && submitter.getAttribute("formaction")) || form.action;
      var buttons = form.querySelectorAll("button");
      buttons.forEach(function (b) { b.disabled = true; });
      fetch(action, {
        method: "POST",
        body: new FormData(form),
        headers: { "X-CSRF-Token": csrfToken(), Accept: "application/json" },
        credentials: "same-origin"
      }).then(function (response) {
        return response.json().then(function (data) {
          if (!response.ok) {
            showError(data.title + ": " + data.detail);
            buttons.forEach(function (b) { b.disabled = false; });
            return;
          }
          showError("");
          messageBox.textContent = data.message || "";
          apply(data, true);
          schedule();
        });
      }).catch(function () {
        showError("The runner did not answer; check the run's state before trying again.");
        buttons.forEach(function (b) { b.disabled = false; });
      });
    });

    schedule();
  }

  /* ---- every page: confirmations, live forms, copy buttons ---- */

  document.addEventListener("submit", function (event) {
    var form = event.target;
    var message = (event.submitter && event.submitter.dataset.confirm) || form.dataset.confirm;
    if (message && !window.confirm(message)) {
      event.preventDefault();
      return;
    }
    var run = document.getElementById("run");
    if (run && form.hasAttribute("data-live-form")) {
      event.preventDefault();
      run.dispatchEvent(new CustomEvent("live-submit", { detail: { form: form, submitter: event.submitter } }));
    }
  });

  document.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-copy]");
    if (!button) { return; }
    var source = document.getElementById(button.dataset.copy);
    var done = function () {
      button.textContent = "Copied";
      window.setTimeout(function () { button.textContent = "Copy"; }, 2000);
    };
    var select = function () {
      var range = document.createRange();
      range.selectNodeContents(source);
      var selection = window.getSelection();
      selection.removeAllRanges();
      selection.addRange(range);
      button.textContent = "Selected: press Ctrl+C";
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(source.textContent).then(done, select);
    } else {
      select();
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var editor = document.getElementById("editor");
    if (editor) { initEditor(editor); }
    var run = document.getElementById("run");
    if (run) { initRun(run); }
    var summary = document.getElementById("error-summary");
    if (summary) { summary.focus(); }
  });
})();
