/* Dingqiao's few behaviours that need the browser: where the member is (checkout), WeChat Pay's JS bridge,
   and the feedback every request gets (in-flight state, confirm dialog, toasts, upload checks). Everything
   else is htmx attributes in the templates. No inline scripts (CSP script-src 'self'). */
(function () {
  "use strict";

  // Inside WeChat: sign a JS-SDK config for this page and expose wx.ready as a promise.
  function initWechatJssdk() {
    var meta = document.querySelector('meta[name="dq-jssdk-config"]');
    if (!meta || !window.wx || !/MicroMessenger/i.test(navigator.userAgent) || window.dingqiaoWxReady) { return; }
    var page = window.location.href.split("#")[0];
    window.dingqiaoWxReady = fetch(meta.content + "?url=" + encodeURIComponent(page), { credentials: "same-origin" })
      .then(function (res) { return res.json(); })
      .then(function (cfg) {
        if (!cfg.enabled) { throw new Error("jssdk disabled"); }
        return new Promise(function (resolve, reject) {
          window.wx.config({ debug: false, appId: cfg.appId, timestamp: cfg.timestamp, nonceStr: cfg.nonceStr,
                             signature: cfg.signature, jsApiList: cfg.jsApiList,
                             openTagList: cfg.openTagList || [] });
          window.wx.ready(resolve);
          window.wx.error(reject);
        });
      });
  }

  function locate(done) {
    // Inside WeChat with a signed JS-SDK config: wx.getLocation gives GCJ-02, the coordinates outlets use.
    if (window.wx && window.dingqiaoWxReady) {
      window.dingqiaoWxReady.then(function () {
        window.wx.getLocation({
          type: "gcj02",
          success: function (res) { done(res.latitude, res.longitude); },
          fail: function () { browserLocate(done); }
        });
      }, function () { browserLocate(done); });
      return;
    }
    browserLocate(done);
  }

  function browserLocate(done) {
    if (!navigator.geolocation) { done(null, null); return; }
    navigator.geolocation.getCurrentPosition(
      function (pos) { done(pos.coords.latitude, pos.coords.longitude); },
      function () { done(null, null); },
      { timeout: 8000, maximumAge: 600000 }
    );
  }

  function initOutletList(root) {
    var list = root.querySelector ? root.querySelector("[data-locate-url]") : null;
    if (!list && root.matches && root.matches("[data-locate-url]")) { list = root; }
    if (!list || list.dataset.located) { return; }
    list.dataset.located = "1";
    locate(function (lat, lng) {
      var note = list.querySelector(".dq-locating");
      if (lat === null) { if (note) { note.textContent = "未获取到位置，门店按区域排列"; } return; }
      var url = list.dataset.locateUrl + "?lat=" + encodeURIComponent(lat) + "&lng=" + encodeURIComponent(lng);
      window.htmx.ajax("GET", url, { target: "#outlet-list", swap: "outerHTML" });
    });
  }

  function initWechatPay(root) {
    var el = root.querySelector ? root.querySelector("[data-wechat-pay]") : null;
    if (!el) { return; }
    var params = JSON.parse(el.dataset.wechatPay);
    var done = function () { window.location.href = el.dataset.returnUrl; };
    if (typeof window.WeixinJSBridge === "undefined") {
      el.textContent = "请在微信中打开本页面完成支付";
      return;
    }
    window.WeixinJSBridge.invoke("getBrandWCPayRequest", params, function (res) {
      if (res.err_msg === "get_brand_wcpay_request:ok") { done(); }
      else if (res.err_msg === "get_brand_wcpay_request:cancel") { el.textContent = "已取消支付"; }
      else { el.textContent = "支付未完成，请重试"; }
    });
  }

  // 扫码核销: WeChat's scanner reads the pickup QR (a URL ending in the 12-digit code) or a bare code.
  function initScanButton(root) {
    var button = root.querySelector ? root.querySelector("[data-scan-url]") : null;
    if (!button || button.dataset.bound) { return; }
    button.dataset.bound = "1";
    if (!window.dingqiaoWxReady) { button.disabled = true; return; }
    button.addEventListener("click", function () {
      window.dingqiaoWxReady.then(function () {
        window.wx.scanQRCode({
          needResult: 1,
          scanType: ["qrCode", "barCode"],
          success: function (res) {
            var match = /(\d{12})\s*$/.exec(String(res.resultStr || "").replace(/[\s-]/g, ""));
            var code = match ? match[1] : String(res.resultStr || "");
            window.htmx.ajax("GET", button.dataset.scanUrl + "?code=" + encodeURIComponent(code),
                             { target: "#redeem-result", swap: "outerHTML" });
          }
        });
      });
    });
  }

  // 确认收款: the member confirms a 商家转账 bill on their own phone (WeChat's page, their payment password). The
  // callback is not proof of payment: afterwards the form asks our server, which asks WeChat.
  function initTransferConfirm(root) {
    var buttons = root.querySelectorAll ? root.querySelectorAll("[data-transfer-confirm]") : [];
    Array.prototype.forEach.call(buttons, function (button) {
      if (button.dataset.bound) { return; }
      button.dataset.bound = "1";
      var form = button.closest("form");
      var confirm = function () {
        window.WeixinJSBridge.invoke("requestMerchantTransfer", {
          mchId: button.dataset.mchId, appId: button.dataset.appId, package: button.dataset.package
        }, function (res) {
          button.disabled = false;
          if (res.err_msg === "requestMerchantTransfer:cancel") { return; }
          if (res.err_msg !== "requestMerchantTransfer:ok") { button.textContent = "未能打开确认页，请重试"; }
          window.htmx.trigger(form, "dq-transfer-done");  // whatever the page said, ask the server
        });
      };
      button.addEventListener("click", function () {
        if (typeof window.WeixinJSBridge === "undefined") {
          button.textContent = "请在微信中打开";
          return;
        }
        button.disabled = true;
        // The JS-SDK config (requestMerchantTransfer in its jsApiList) first; a failed config still tries.
        var ready = window.dingqiaoWxReady || Promise.resolve();
        ready.then(confirm, confirm);
      });
    });
  }

  // "使用我的位置" on forms that record where a shop is: fills the hidden latitude/longitude inputs.
  function initLocateButtons(root) {
    var buttons = root.querySelectorAll ? root.querySelectorAll("[data-locate-button]") : [];
    Array.prototype.forEach.call(buttons, function (button) {
      if (button.dataset.bound) { return; }
      button.dataset.bound = "1";
      var box = button.parentNode;
      var status = box.querySelector("[data-locate-status]");
      button.addEventListener("click", function () {
        status.textContent = "正在定位…";
        locate(function (lat, lng) {
          if (lat === null) { status.textContent = "未能获取位置，请允许定位后重试"; return; }
          box.querySelector("[data-latitude]").value = lat;
          box.querySelector("[data-longitude]").value = lng;
          status.textContent = "已定位：" + Number(lat).toFixed(5) + ", " + Number(lng).toFixed(5);
        });
      });
    });
  }

  // Charts: a <canvas data-chart-url data-chart-type> draws the JSON {labels, series: [{label, data}], unit}
  // from its URL. Chart.js (vendored) is loaded the first time a page has a chart.
  var chartLib = null;
  function loadChartLib(src) {
    if (window.Chart) { return Promise.resolve(); }
    if (!chartLib) {
      chartLib = new Promise(function (resolve, reject) {
        var script = document.createElement("script");
        script.src = src; script.onload = resolve; script.onerror = reject;
        document.head.appendChild(script);
      });
    }
    return chartLib;
  }

  var PALETTE = ["#07c160", "#10aeff", "#ff8f1f", "#fa5151", "#6467f0", "#a0a0a0"];
  function yuan(fen) { return "¥" + (fen / 100).toFixed(fen % 100 === 0 ? 0 : 2); }

  function drawChart(canvas, data) {
    var type = canvas.dataset.chartType || "bar";
    var money = data.unit === "fen";
    var round = type === "doughnut";
    var datasets = data.series.map(function (s, i) {
      // monotone: a smoothed line never swings below zero or above its highest point between two days
      return { label: s.label, data: s.data, borderWidth: round ? 0 : 2, cubicInterpolationMode: "monotone",
               backgroundColor: round ? PALETTE : PALETTE[i % PALETTE.length],
               borderColor: PALETTE[i % PALETTE.length], pointRadius: 2, maxBarThickness: 36 };
    });
    var format = function (v) { return money ? yuan(v) : String(v); };
    var options = {
      responsive: true, maintainAspectRatio: false, animation: false,
      plugins: { legend: { display: round || datasets.length > 1, position: "bottom" },
                 tooltip: { callbacks: { label: function (ctx) {
                   return (ctx.dataset.label ? ctx.dataset.label + "：" : "") + format(ctx.parsed.y !== undefined ? ctx.parsed.y : ctx.parsed);
                 } } } }
    };
    if (!round) {
      options.scales = { x: { stacked: canvas.dataset.chartStacked === "1", grid: { display: false } },
                         y: { stacked: canvas.dataset.chartStacked === "1", beginAtZero: true,
                              ticks: { precision: 0, callback: format } } };
    }
    if (canvas.chart) { canvas.chart.destroy(); }
    canvas.chart = new window.Chart(canvas, { type: type, data: { labels: data.labels, datasets: datasets }, options: options });
    canvas.dataset.chartReady = "1";
  }

  // One request per JSON URL, however many charts a page draws from it.
  var chartData = {};
  function fetchChartData(url) {
    if (!chartData[url]) {
      chartData[url] = fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then(function (res) { if (!res.ok) { throw new Error(res.status); } return res.json(); });
      chartData[url].then(function () { delete chartData[url]; }, function () { delete chartData[url]; });
    }
    return chartData[url];
  }

  function initCharts(root) {
    var canvases = root.querySelectorAll ? root.querySelectorAll("canvas[data-chart-url]") : [];
    Array.prototype.forEach.call(canvases, function (canvas) {
      if (canvas.dataset.chartBound) { return; }
      canvas.dataset.chartBound = "1";
      var empty = canvas.parentNode.querySelector("[data-chart-empty]");
      Promise.all([
        loadChartLib(canvas.dataset.chartLib),
        fetchChartData(canvas.dataset.chartUrl)
      ]).then(function (results) {
        var data = results[1][canvas.dataset.chartKey];
        var total = data.series.reduce(function (sum, s) { return sum + s.data.reduce(function (a, b) { return a + b; }, 0); }, 0);
        if (!total && empty) { empty.hidden = false; canvas.hidden = true; canvas.dataset.chartReady = "empty"; return; }
        drawChart(canvas, data);
      }).catch(function () {
        if (empty) { empty.textContent = "图表加载失败，请稍后重试"; empty.hidden = false; }
        canvas.dataset.chartReady = "error";
      });
    });
  }

  // ---------------------------------------------------------------- feedback: loading, dialogs, toasts, uploads
  // Done once here for every page, so no template needs its own hx-disabled-elt, confirm() or upload check.

  var BUTTONS = 'button, input[type="submit"], input[type="button"]';
  var underway = 0;  // requests in flight, for the thin progress bar at the top

  function progressBar() {
    // Made on demand: a boosted navigation replaces the body's children, a bar among them.
    var bar = document.getElementById("dq-loading");
    if (!bar) {
      bar = document.createElement("div");
      bar.id = "dq-loading";
      bar.className = "dq-loading";
      bar.setAttribute("aria-hidden", "true");
      document.body.appendChild(bar);
    }
    return bar;
  }

  function loadingStarted() {
    underway += 1;
    progressBar().classList.add("dq-loading--on");
  }

  function loadingEnded() {
    underway = Math.max(0, underway - 1);
    if (!underway) { progressBar().classList.remove("dq-loading--on"); }
  }

  // While a form (or a lone htmx button) is being sent, its buttons are disabled — a second tap sends nothing —
  // and the one pressed spins. Counted, so two requests from one form release it when both have ended.
  function holdSender(sender, pressed) {
    sender.dqHolds = (sender.dqHolds || 0) + 1;
    if (sender.dqHolds > 1) { return; }
    var controls = sender.matches(BUTTONS) ? [sender] : Array.prototype.slice.call(sender.querySelectorAll(BUTTONS));
    if (sender.id && !sender.matches(BUTTONS)) {  // buttons outside the form that submit it (form="…")
      controls = controls.concat(Array.prototype.slice.call(
        document.querySelectorAll('button[form="' + sender.id + '"], input[form="' + sender.id + '"]')));
    }
    sender.dqHeld = controls.filter(function (control) {
      if (control.disabled) { return false; }
      control.disabled = true;
      return true;
    });
    pressed = pressed || (sender.matches(BUTTONS) ? sender : sender.dqHeld.filter(function (control) {
      return control.type === "submit";
    })[0]);
    if (pressed) { pressed.classList.add("dq-pressed"); }
    sender.dqPressed = pressed || null;
    sender.classList.add("dq-busy");
    sender.setAttribute("aria-busy", "true");
  }

  function releaseSender(sender) {
    if (!sender.dqHolds) { return; }
    sender.dqHolds -= 1;
    if (sender.dqHolds) { return; }
    (sender.dqHeld || []).forEach(function (control) { control.disabled = false; });
    if (sender.dqPressed) { sender.dqPressed.classList.remove("dq-pressed"); }
    sender.dqHeld = sender.dqPressed = null;
    sender.classList.remove("dq-busy");
    sender.removeAttribute("aria-busy");
  }

  function releaseAll() {
    Array.prototype.forEach.call(document.querySelectorAll(".dq-busy"), function (sender) {
      sender.dqSent = false;
      sender.dqHolds = 1;
      releaseSender(sender);
    });
    underway = 1;
    loadingEnded();
  }

  function senderOf(elt) {
    return (elt.closest && elt.closest("form")) || elt;
  }

  // htmx.ajax() calls without a source element (the located outlet list, the scanner's lookup) are sent "by"
  // the body: they are the page's own work, not a tap, and must not lock every button on it.
  function pageOwnRequest(elt) {
    return elt === document.body || elt === document.documentElement;
  }

  // Polling (the unread badge every 60 s) is no action of the person's: no bar, nothing disabled.
  function inBackground(elt) {
    return /\bevery\b/.test((elt.getAttribute && elt.getAttribute("hx-trigger")) || "");
  }

  // A lookup as the person types — the member suggestions, the restock total: a GET from a field (or a part) of
  // a form, not the form being sent nor a link or button in it. It holds nothing, so a tap on the form's button
  // meanwhile still sends it.
  function lookupInForm(elt, verb) {
    var form = elt.closest && elt.closest("form");
    return Boolean(form) && form !== elt && verb === "get" && !elt.matches("a, " + BUTTONS);
  }

  // The button a form was sent with: submit events name it, htmx's request events do not.
  document.addEventListener("submit", function (evt) { evt.target.dqSubmitter = evt.submitter || null; }, true);

  document.addEventListener("htmx:beforeSend", function (evt) {
    var elt = evt.detail.elt;
    if (!elt || inBackground(elt) || pageOwnRequest(elt) || lookupInForm(elt, evt.detail.requestConfig.verb)) { return; }
    var sender = senderOf(elt);
    var pressed = sender.dqSubmitter && sender.contains(sender.dqSubmitter) ? sender.dqSubmitter : null;
    sender.dqSubmitter = null;
    evt.detail.requestConfig.dqSender = sender;
    holdSender(sender, pressed);
    loadingStarted();
    dismissErrors();  // an old error would read as the answer to this new request
    clearFieldSlots(sender);
  });

  // A refusal about one field (the DQ-Field header, web.error_response) is said next to that field when the form
  // sent has a place for it (templates/_field_errors.html, slot); else it stays in #flash. What was typed stays.
  document.addEventListener("htmx:beforeSwap", function (evt) {
    var xhr = evt.detail.xhr;
    var field = xhr && xhr.status >= 400 ? xhr.getResponseHeader("DQ-Field") : null;
    var sender = evt.detail.requestConfig && evt.detail.requestConfig.dqSender;
    if (!field || !/^[a-z_]+$/.test(field) || !sender || !sender.querySelector) { return; }
    var slot = sender.querySelector('[data-field-slot="' + field + '"]');
    if (!slot) { return; }
    var inert = document.createElement("template");  // parsed, never run or loaded
    inert.innerHTML = evt.detail.serverResponse;
    var message = document.createElement("span");
    message.className = "dq-field-error";
    message.setAttribute("role", "alert");
    message.textContent = inert.content.textContent.trim();
    evt.detail.target = slot;
    evt.detail.serverResponse = message.outerHTML;
    var input = sender.elements && sender.elements[field];
    if (input && input.setAttribute) { input.setAttribute("aria-invalid", "true"); }
  });

  function clearFieldSlots(form) {
    Array.prototype.forEach.call(form.querySelectorAll ? form.querySelectorAll("[data-field-slot]") : [], function (slot) {
      slot.textContent = "";
      var input = form.elements && form.elements[slot.getAttribute("data-field-slot")];
      if (input && input.removeAttribute) { input.removeAttribute("aria-invalid"); }
    });
  }

  document.addEventListener("htmx:afterRequest", function (evt) {
    var sender = evt.detail.requestConfig && evt.detail.requestConfig.dqSender;
    if (!sender) { return; }
    var xhr = evt.detail.xhr;
    var leaving = xhr && xhr.status < 400 && (xhr.getResponseHeader("HX-Redirect") || xhr.getResponseHeader("HX-Refresh"));
    if (leaving) { return; }  // the next page is on its way: a tap meanwhile would send again
    releaseSender(sender);
    loadingEnded();
  });

  // Forms htmx does not send (hx-boost="false", e.g. the admin's queues): the same, for a whole-page post.
  document.addEventListener("submit", function (evt) {
    var form = evt.target;
    if (evt.defaultPrevented || !(form instanceof HTMLFormElement)) { return; }
    if (form.dqSent || form.dqHolds) { evt.preventDefault(); return; }  // already on its way: ask nothing
    var question = (evt.submitter && evt.submitter.getAttribute("hx-confirm")) || form.getAttribute("hx-confirm");
    if (question && !form.dqConfirmed) {
      evt.preventDefault();
      var submitter = evt.submitter;
      askConfirm(question, function () {
        form.dqConfirmed = true;
        if (form.requestSubmit) { form.requestSubmit(submitter || undefined); } else { form.submit(); }
        form.dqConfirmed = false;
      });
      return;
    }
    if (form.dqSent || form.dqHolds) { evt.preventDefault(); return; }  // already on its way
    form.dqSent = true;
    var pressed = evt.submitter || null;
    // Disabled after the browser has read the form: a disabled submitter would not send its name and value.
    window.setTimeout(function () {
      holdSender(form, pressed);
      loadingStarted();
      // A download (the admin's exports) leaves the page where it is: give the buttons back.
      window.setTimeout(function () { form.dqSent = false; releaseSender(form); loadingEnded(); }, 15000);
    }, 0);
  });

  // Pages whose state moves or that are private carry hx-history="false" (base.html): htmx keeps no snapshot
  // of them, and the server says no-store.
  function isNoStorePage() {
    return Boolean(document.querySelector('main [hx-history="false"]'));
  }

  // Back into such a page that the back-forward cache kept: drawn again from the server. Elsewhere, buttons
  // held by the navigation that left are given back.
  window.addEventListener("pageshow", function (evt) {
    if (!evt.persisted) { return; }
    if (isNoStorePage()) { window.location.reload(); return; }
    releaseAll();
  });

  // A snapshot of this page that htmx took before it was marked (an older version of the site) goes too.
  function forgetStaleSnapshot() {
    if (!isNoStorePage()) { return; }
    try {
      var here = window.location.pathname + window.location.search;
      var cache = JSON.parse(window.localStorage.getItem("htmx-history-cache") || "[]");
      var kept = cache.filter(function (entry) { return entry.url !== here; });
      if (kept.length !== cache.length) { window.localStorage.setItem("htmx-history-cache", JSON.stringify(kept)); }
    } catch (e) { /* no storage (private mode): nothing was kept either */ }
  }

  // hx-confirm asks in a WeUI dialog instead of the browser's confirm(): focus moves into it, Esc or 取消
  // cancels, focus goes back where it was.
  var dialogOpen = false;
  function askConfirm(question, onConfirm) {
    if (dialogOpen) { return; }
    dialogOpen = true;
    var opener = document.activeElement;
    var box = document.createElement("div");
    box.className = "dq-dialog";
    box.innerHTML = '<div class="weui-mask"></div>' +
      '<div class="weui-dialog" role="alertdialog" aria-modal="true" aria-labelledby="dq-dialog-text">' +
      '<div class="weui-dialog__bd" id="dq-dialog-text"></div>' +
      '<div class="weui-dialog__ft">' +
      '<button type="button" class="weui-dialog__btn weui-dialog__btn_default" data-dq-cancel>取消</button>' +
      '<button type="button" class="weui-dialog__btn weui-dialog__btn_primary" data-dq-ok>确定</button>' +
      "</div></div>";
    box.querySelector("#dq-dialog-text").textContent = question;
    var cancel = box.querySelector("[data-dq-cancel]");
    var ok = box.querySelector("[data-dq-ok]");
    var close = function (confirmed) {
      if (!dialogOpen) { return; }
      dialogOpen = false;
      box.remove();
      if (opener && opener.focus && document.contains(opener)) { opener.focus(); }
      if (confirmed) { onConfirm(); }
    };
    cancel.addEventListener("click", function () { close(false); });
    ok.addEventListener("click", function () { close(true); });
    // The second tap of a double tap on the button that opened the dialog lands on the mask: not an answer.
    var openedAt = Date.now();
    box.querySelector(".weui-mask").addEventListener("click", function () {
      if (Date.now() - openedAt > 500) { close(false); }
    });
    box.addEventListener("keydown", function (evt) {
      if (evt.key === "Escape") { evt.preventDefault(); close(false); }
      if (evt.key === "Tab") {  // two buttons: focus stays inside the dialog
        evt.preventDefault();
        (document.activeElement === ok ? cancel : ok).focus();
      }
    });
    document.body.appendChild(box);
    cancel.focus();  // the safe answer first: these confirm deleting, paying out, refunding
  }

  document.addEventListener("htmx:confirm", function (evt) {
    if (!evt.detail.question) { return; }
    evt.preventDefault();
    askConfirm(evt.detail.question, function () { evt.detail.issueRequest(true); });
  });

  // Toasts in #flash: a success leaves by itself after a few seconds (not while a finger or the focus is on
  // it), an error stays until tapped or the next request. #flash keeps aria-live, the toast its role.
  var TOAST_MS = 3000;

  function dismiss(toast) {
    if (!toast.parentNode || toast.classList.contains("dq-toast--leaving")) { return; }
    toast.classList.add("dq-toast--leaving");
    window.setTimeout(function () { toast.remove(); }, 200);
  }

  function dismissErrors() {
    Array.prototype.forEach.call(document.querySelectorAll("#flash .dq-toast--error"), dismiss);
  }

  function initToasts() {
    var flash = document.getElementById("flash");
    var toasts = flash ? flash.querySelectorAll(".dq-toast") : [];
    Array.prototype.forEach.call(toasts, function (toast) {
      if (toast.dataset.dqToast) { return; }
      toast.dataset.dqToast = "1";
      var close = document.createElement("button");
      close.type = "button";
      close.className = "dq-toast__close";
      close.setAttribute("aria-label", "关闭");
      close.textContent = "×";
      toast.appendChild(close);
      toast.addEventListener("click", function (evt) { if (!evt.target.closest("a")) { dismiss(toast); } });
      if (toast.classList.contains("dq-toast--error")) { return; }
      var timer = null;
      var start = function () { timer = window.setTimeout(function () { dismiss(toast); }, TOAST_MS); };
      var pause = function () { window.clearTimeout(timer); };
      toast.addEventListener("pointerenter", pause);
      toast.addEventListener("focusin", pause);
      toast.addEventListener("pointerleave", start);
      toast.addEventListener("focusout", start);
      start();
    });
  }

  function showToast(message, kind) {
    var flash = document.getElementById("flash");
    if (!flash) { window.alert(message); return; }
    var toast = document.createElement("div");
    toast.className = "dq-toast dq-toast--" + kind;
    toast.setAttribute("role", kind === "error" ? "alert" : "status");
    toast.textContent = message;
    flash.replaceChildren(toast);
    initToasts();
  }

  // Photos are checked in the browser before they go (the server's limit and formats: base.html's dq-upload),
  // and a big phone photo is redrawn at PHOTO_SIDE px as a JPEG — a few hundred KB instead of 12 MB. The
  // server checks and re-encodes everything again.
  var PHOTO_SIDE = 1600;
  var SHRINK_ABOVE = 1024 * 1024;

  function uploadLimits() {
    var meta = document.querySelector('meta[name="dq-upload"]');
    if (!meta) { return null; }
    return { maxBytes: Number(meta.content), types: meta.dataset.types.split(","),
             tooLarge: meta.dataset.tooLarge, wrongType: meta.dataset.wrongType };
  }

  function decode(file) {
    if (window.createImageBitmap) { return window.createImageBitmap(file); }
    // CSP allows data: images, not blob: ones
    return new Promise(function (resolve, reject) {
      var reader = new FileReader();
      reader.onload = function () {
        var img = new Image();
        img.onload = function () { resolve(img); };
        img.onerror = reject;
        img.src = reader.result;
      };
      reader.onerror = reject;
      reader.readAsDataURL(file);
    });
  }

  function redraw(file) {
    return decode(file).then(function (image) {
      var scale = Math.min(1, PHOTO_SIDE / Math.max(image.width, image.height));
      var canvas = document.createElement("canvas");
      canvas.width = Math.max(1, Math.round(image.width * scale));
      canvas.height = Math.max(1, Math.round(image.height * scale));
      var keepAlpha = file.type === "image/png";  // a PNG may be transparent: it stays a PNG
      var type = keepAlpha ? "image/png" : "image/jpeg";
      var context = canvas.getContext("2d");
      if (!keepAlpha) { context.fillStyle = "#fff"; context.fillRect(0, 0, canvas.width, canvas.height); }
      context.drawImage(image, 0, 0, canvas.width, canvas.height);
      if (image.close) { image.close(); }
      return new Promise(function (resolve, reject) {
        canvas.toBlob(function (blob) {
          if (!blob) { reject(new Error("toBlob")); return; }
          var name = file.name.replace(/\.[^.]*$/, "") + (keepAlpha ? ".png" : ".jpg");
          resolve(new File([blob], name, { type: type, lastModified: Date.now() }));
        }, type, 0.85);
      });
    });
  }

  // → {file} to send, or {error} to say
  function prepareUpload(file, limits) {
    var accepted = limits.types.indexOf(file.type) >= 0;
    if (!accepted && !/^image\//.test(file.type)) { return Promise.resolve({ error: limits.wrongType }); }
    var tooLarge = file.size > limits.maxBytes;
    var animated = file.type === "image/gif";  // redrawn it would lose its animation
    if (accepted && (animated || file.size <= SHRINK_ABOVE)) {
      return Promise.resolve(tooLarge ? { error: limits.tooLarge } : { file: file });
    }
    return redraw(file).then(function (smaller) {
      var chosen = !accepted || smaller.size < file.size ? smaller : file;
      return chosen.size > limits.maxBytes ? { error: limits.tooLarge } : { file: chosen };
    }, function () {
      // not decodable here (HEIC in a browser without it, a broken file): only the checks decide
      if (!accepted) { return { error: limits.wrongType }; }
      return tooLarge ? { error: limits.tooLarge } : { file: file };
    });
  }

  function checkUpload(input) {
    var limits = uploadLimits();
    if (!limits || !input.files || !input.files.length) { return; }
    var files = Array.prototype.slice.call(input.files);
    var sender = input.form || input;
    holdSender(sender, null);  // nothing is sent while the photos are being checked and redrawn
    Promise.all(files.map(function (file) { return prepareUpload(file, limits); })).then(function (results) {
      var refused = results.filter(function (result) { return result.error; })[0];
      if (!refused && results.some(function (result, i) { return result.file !== files[i]; })) {
        try {
          var chosen = new DataTransfer();
          results.forEach(function (result) { chosen.items.add(result.file); });
          input.files = chosen.files;
        } catch (e) {  // a browser that cannot replace the files sends the originals, if they fit
          refused = files.filter(function (file) { return file.size > limits.maxBytes; }).length ? { error: limits.tooLarge } : null;
        }
      }
      if (refused) {
        input.value = "";
        showToast(refused.error, "error");
      }
    }).then(function () { releaseSender(sender); }, function () { releaseSender(sender); });
  }

  document.addEventListener("change", function (evt) {
    if (evt.target.matches && evt.target.matches('input[type="file"]')) { checkUpload(evt.target); }
  });

  function init(root) {
    initWechatJssdk(); initOutletList(root); initWechatPay(root); initScanButton(root);
    initTransferConfirm(root);
    initLocateButtons(root); initCharts(root); initToasts(); forgetStaleSnapshot();
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (evt) { init(evt.target); });
})();
