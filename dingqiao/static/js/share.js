/* Sharing: the share data WeChat uses when a member shares a page (the sharer's referral code in the link), the
   product page's 分享 sheet (发送给朋友 / 复制链接 / 生成海报) and the poster shown in the page for a long press.
   Loaded on every page (deferred); does nothing where there is nothing to share. */
(function () {
  "use strict";

  var inWechat = /MicroMessenger/i.test(navigator.userAgent);

  // Shares from a product page or 我的推广码 carry the sharer's referral code (data-share-* on the element).
  // The card is the product's name, subtitle and picture: never any reward (WeChat's rule on induced sharing).
  function initShare(root) {
    var el = root.querySelector ? root.querySelector("[data-share-link]") : null;
    if (!el || !window.dingqiaoWxReady) { return; }
    window.dingqiaoWxReady.then(function () {
      var share = { title: el.dataset.shareTitle, desc: el.dataset.shareDesc, link: el.dataset.shareLink,
                    imgUrl: el.dataset.shareImg || "" };
      window.wx.updateAppMessageShareData(share);
      window.wx.updateTimelineShareData({ title: share.title, link: share.link, imgUrl: share.imgUrl });
    }, function () {});
  }

  function initSheet(root) {
    if (!inWechat || !root.querySelectorAll) { return; }
    // An H5 page cannot open WeChat's share itself: inside WeChat the sheet points at the ··· menu.
    Array.prototype.forEach.call(root.querySelectorAll("[data-share-guide]"), function (el) { el.hidden = false; });
  }

  function element(tag, className, text) {
    var el = document.createElement(tag);
    if (className) { el.className = className; }
    if (text) { el.textContent = text; }
    return el;
  }

  var toastTimer = null;
  function toast(message) {
    var el = document.querySelector(".dq-share-toast");
    if (!el) { el = element("div", "dq-share-toast"); el.setAttribute("role", "status"); document.body.appendChild(el); }
    el.textContent = message;
    el.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(function () { el.hidden = true; }, 2000);
  }

  // --- the action sheet
  var lastFocus = null;
  function openSheet(sheet) {
    lastFocus = document.activeElement;
    var link = sheet.querySelector(".dq-sheet__link");
    if (link) { link.hidden = true; }
    sheet.hidden = false;
    var panel = sheet.querySelector(".weui-actionsheet");
    // One frame hidden-to-shown first, so the panel slides up instead of appearing.
    requestAnimationFrame(function () { requestAnimationFrame(function () {
      panel.classList.add("weui-actionsheet_toggle");
      var first = panel.querySelector(".weui-actionsheet__cell:not([hidden])");
      if (first) { first.focus({ preventScroll: true }); }
    }); });
  }

  function closeSheet(sheet) {
    if (!sheet || sheet.hidden) { return; }
    sheet.querySelector(".weui-actionsheet").classList.remove("weui-actionsheet_toggle");
    sheet.hidden = true;
    if (lastFocus && lastFocus.focus) { lastFocus.focus({ preventScroll: true }); }
  }

  function openSheetOf(el) { return el.closest(".dq-sheet"); }

  // --- 复制链接: the clipboard where the browser allows it, else the link selected for a long press
  function copyLink(button) {
    var text = button.dataset.shareCopy;
    var done = function () { closeSheet(openSheetOf(button)); toast("链接已复制，去粘贴给好友吧"); };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { selectLink(button); });
    } else {
      selectLink(button);
    }
  }

  function selectLink(button) {
    var sheet = openSheetOf(button);
    var box = sheet ? sheet.querySelector(".dq-sheet__link") : null;
    if (box) { box.hidden = false; }
    var field = box ? box.querySelector("input") : button.parentNode.querySelector("input");
    if (!field) { return; }
    field.focus();
    field.select();
    field.setSelectionRange(0, field.value.length);
    var copied = false;
    try { copied = document.execCommand("copy"); } catch (e) { copied = false; }
    if (copied) { closeSheet(sheet); toast("链接已复制，去粘贴给好友吧"); }
    else { toast("已选中链接，请长按复制"); }
  }

  // --- the poster, shown in the page: a long press on the picture saves it (WeChat and phone browsers)
  function openPoster(url) {
    closePoster();
    var overlay = element("div", "dq-poster");
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-modal", "true");
    overlay.setAttribute("aria-label", "分享海报");
    var frame = element("div", "dq-poster__frame");
    var status = element("p", "dq-poster__status", "海报生成中…");
    var image = element("img", "dq-poster__img");
    image.alt = "分享海报";
    image.hidden = true;
    var hint = element("p", "dq-poster__hint", "长按保存图片，分享给好友");
    hint.hidden = true;
    var close = element("button", "dq-poster__close", "关闭");
    close.type = "button";
    close.setAttribute("data-poster-close", "");
    image.addEventListener("load", function () { status.hidden = true; image.hidden = false; hint.hidden = false; });
    image.addEventListener("error", function () { status.textContent = "海报生成失败，请稍后再试"; });
    frame.appendChild(status);
    frame.appendChild(image);
    overlay.appendChild(frame);
    overlay.appendChild(hint);
    overlay.appendChild(close);
    overlay.addEventListener("click", function (evt) {
      if (evt.target === overlay || evt.target.hasAttribute("data-poster-close")) { closePoster(); }
    });
    document.body.appendChild(overlay);
    document.documentElement.classList.add("dq-noscroll");
    image.src = url;
    close.focus({ preventScroll: true });
  }

  function closePoster() {
    var overlay = document.querySelector(".dq-poster");
    if (overlay) { overlay.parentNode.removeChild(overlay); }
    document.documentElement.classList.remove("dq-noscroll");
  }

  // --- 发送给朋友 inside WeChat: an arrow to the ··· menu in the top right corner
  function openGuide() {
    var overlay = element("div", "dq-share-guide");
    overlay.setAttribute("role", "dialog");
    overlay.setAttribute("aria-label", "分享提示");
    overlay.appendChild(element("div", "dq-share-guide__arrow"));
    overlay.appendChild(element("p", "dq-share-guide__text", "点击右上角 ··· \n发送给朋友或分享到朋友圈"));
    overlay.addEventListener("click", function () { overlay.parentNode.removeChild(overlay); });
    document.body.appendChild(overlay);
  }

  // One listener for the whole document (pages arrive by htmx too); capture, so a boosted link never navigates.
  document.addEventListener("click", function (evt) {
    var target = evt.target.closest ? evt.target.closest(
      "[data-share-open], [data-share-close], [data-share-copy], [data-share-poster], [data-share-guide]") : null;
    if (!target) { return; }
    evt.preventDefault();
    if (target.hasAttribute("data-share-open")) {
      var sheet = document.getElementById(target.dataset.shareOpen);
      if (sheet) { openSheet(sheet); }
    } else if (target.hasAttribute("data-share-close")) {
      closeSheet(openSheetOf(target));
    } else if (target.hasAttribute("data-share-copy")) {
      copyLink(target);
    } else if (target.hasAttribute("data-share-poster")) {
      closeSheet(openSheetOf(target));
      openPoster(target.dataset.sharePoster);
    } else {
      closeSheet(openSheetOf(target));
      openGuide();
    }
  }, true);

  document.addEventListener("keydown", function (evt) {
    if (evt.key !== "Escape") { return; }
    closePoster();
    closeSheet(document.querySelector(".dq-sheet:not([hidden])"));
  });

  // A boosted navigation away must not leave an overlay over the next page.
  document.addEventListener("htmx:beforeHistorySave", closePoster);

  function init(root) { initShare(root); initSheet(root); }

  document.addEventListener("DOMContentLoaded", function () { init(document); });
  document.addEventListener("htmx:load", function (evt) { init(evt.target); });
})();
