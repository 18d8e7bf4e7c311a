/* Dingqiao's few behaviours that need the browser: where the member is (checkout), and WeChat Pay's
   JS bridge. Everything else is htmx attributes in the templates. No inline scripts (CSP script-src 'self'). */
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

  function init(root) {
    initWechatJssdk(); initOutletList(root); initWechatPay(root); initScanButton(root);
    initTransferConfirm(root);
    initLocateButtons(root); initCharts(root);
  }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (evt) { init(evt.target); });
})();
