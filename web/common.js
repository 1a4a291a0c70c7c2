// Helpers shared by the pack's canvas widgets: where a node's frames come from, fetching a frame of an
// uploaded clip from the pack's route (nodes/comfy_adapter.py, GET /harmovid/frame), pictures a run left
// behind (ComfyUI's /view), fitting a picture into a box, and adding a canvas to a node.
import { api } from "../../scripts/api.js";
import { app } from "../../scripts/app.js";

export const FRAME_ROUTE = "/harmovid/frame";
// Widgets of loader nodes that name a file in ComfyUI's input folder (core Load Video / Load Image,
// VideoHelperSuite's Load Video).
const FILE_WIDGETS = ["file", "video", "image"];
const MAX_HOPS = 8;

export function widget(node, name) {
  return node.widgets?.find((w) => w.name === name);
}

// The uploaded file feeding input `inputName` of `node`: follows links upstream (through nodes such as
// Get Video Components) to a loader node. {filename, subfolder} or null when the frames are made by
// other nodes (then only a run can show them).
export function sourceFile(node, inputName) {
  let slot = node.findInputSlot?.(inputName) ?? -1;
  let current = node;
  for (let hop = 0; hop < MAX_HOPS && slot >= 0; hop++) {
    const upstream = current.getInputNode?.(slot);
    if (!upstream) return null;
    for (const name of FILE_WIDGETS) {
      const value = widget(upstream, name)?.value;
      if (typeof value === "string" && /\.[a-z0-9]+( \[input\])?$/i.test(value)) {
        const path = value.replace(/ \[input\]$/, "");
        const cut = path.lastIndexOf("/");
        return { filename: path.slice(cut + 1), subfolder: cut >= 0 ? path.slice(0, cut) : "" };
      }
    }
    current = upstream;
    slot = (upstream.inputs ?? []).findIndex((input) => input.link != null);
  }
  return null;
}

export function sourceKey(source, index, cutout = false) {
  return source ? `${source.subfolder}/${source.filename}#${index}${cutout ? "+cutout" : ""}` : "";
}

function loadImage(url) {
  return new Promise((resolve, reject) => {
    const image = new Image();
    image.onload = () => resolve(image);
    image.onerror = () => reject(new Error(`cannot load ${url}`));
    image.src = url;
  });
}

// Frame `index` of an uploaded clip: {image, count, width, height}, or {error} with the route's message.
// A cut-out keeps the person (the people `prompts` pick: SAM2 Mask's widget texts) as the alpha.
export async function fetchFrame(source, index, cutout = false, prompts = null) {
  const query = new URLSearchParams({ filename: source.filename, subfolder: source.subfolder, index: String(index),
                                      ...(cutout ? { cutout: "1", ...(prompts ?? {}) } : {}) });
  const response = await api.fetchApi(`${FRAME_ROUTE}?${query}`);
  if (!response.ok) return { error: (await response.text()) || `HTTP ${response.status}` };
  const url = URL.createObjectURL(await response.blob());
  const image = await loadImage(url);
  const header = (name) => Number(response.headers.get(`X-HarmoVid-${name}`));
  return { image, count: header("Frame-Count"), width: header("Width"), height: header("Height") };
}

// A picture a run saved ({filename, subfolder, type} as in a node's "ui" output).
export function viewURL(reference) {
  const query = new URLSearchParams({ filename: reference.filename, subfolder: reference.subfolder ?? "",
                                      type: reference.type ?? "temp" });
  return api.apiURL(`/view?${query}`);
}

export function loadView(reference) {
  return loadImage(viewURL(reference));
}

// A canvas widget at the end of `node`'s widgets (after the saved ones, so the saved values keep their
// places), sized to the node. `draw(ctx, width, height)` paints it; the returned object's redraw()
// repaints it and `canvas` takes the pointer events.
export function addCanvasWidget(node, name, { minHeight = 240, hint = "" } = {}) {
  const element = document.createElement("div");
  element.style.cssText = "display:flex;flex-direction:column;width:100%;height:100%;min-height:0;";
  const canvas = document.createElement("canvas");
  canvas.style.cssText = "flex:1;width:100%;min-height:0;touch-action:none;cursor:crosshair;border-radius:4px;";
  canvas.dataset.harmovid = name;
  element.appendChild(canvas);
  const footer = document.createElement("div");
  footer.style.cssText = "font:11px sans-serif;color:#999;padding:2px 4px;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;";
  footer.textContent = hint;
  element.appendChild(footer);
  const view = { canvas, footer, draw: null };
  view.redraw = () => {
    const width = Math.max(1, canvas.clientWidth), height = Math.max(1, canvas.clientHeight);
    if (canvas.width !== width || canvas.height !== height) Object.assign(canvas, { width, height });
    const ctx = canvas.getContext("2d");
    ctx.fillStyle = "#1b1b1b";
    ctx.fillRect(0, 0, width, height);
    view.draw?.(ctx, width, height);
  };
  const domWidget = node.addDOMWidget(name, "harmovid-canvas", element, {
    serialize: false,
    hideOnZoom: false,
    getMinHeight: () => minHeight,
    onDraw: () => view.onFrame?.(),
  });
  domWidget.serialize = false;
  view.widget = domWidget;
  new ResizeObserver(() => view.redraw()).observe(canvas);
  return view;
}

// Repaint `view` whenever one of the widgets `names` of `node` changes (typed or set by a widget).
export function redrawOnChange(node, names, view) {
  for (const name of names) {
    const target = widget(node, name);
    const original = target?.callback;
    if (target) target.callback = (...args) => { const result = original?.apply(target, args); view.redraw(); return result; };
  }
}

// A line of text where a picture would be (what to connect, or what went wrong).
export function drawMessage(ctx, text, width, colour = "#aaa", y = 20) {
  ctx.fillStyle = colour;
  ctx.font = "12px sans-serif";
  ctx.fillText(text, 8, y, width - 16);
}

// Pointer position over `canvas` in its own pixels (the node editor scales the element when zooming).
export function canvasPoint(canvas, event) {
  const rect = canvas.getBoundingClientRect();
  return [(event.clientX - rect.left) * canvas.width / rect.width, (event.clientY - rect.top) * canvas.height / rect.height];
}

// Set a widget's value as if the user typed it (its callback runs, the graph is marked changed).
export function setWidget(node, name, value) {
  const target = widget(node, name);
  if (!target || target.value === value) return;
  target.value = value;
  target.callback?.(value);
  node.graph?.setDirtyCanvas?.(true, true);
}

// Register extension `name`: nodes of class `nodeClass` get a widget made by `make(node)` (kept as
// node[property]), at least `width` wide and tall enough for all their widgets, also when a saved
// workflow brings a smaller size; each run's "ui" output goes to the widget's showRun.
export function registerNodeWidget(name, nodeClass, property, make, width) {
  app.registerExtension({
    name,
    async beforeRegisterNodeDef(nodeType, nodeData) {
      if (nodeData?.name === nodeClass) addNodeWidget(nodeType, property, make, width);
    },
  });
}

function addNodeWidget(nodeType, property, make, width) {
  const grow = (node) => node.setSize([Math.max(node.size[0], width), Math.max(node.size[1], node.computeSize()[1])]);
  const created = nodeType.prototype.onNodeCreated;
  nodeType.prototype.onNodeCreated = function () {
    const result = created?.apply(this, arguments);
    this[property] = make(this);
    grow(this);
    return result;
  };
  const configured = nodeType.prototype.onConfigure;
  nodeType.prototype.onConfigure = function () {
    const result = configured?.apply(this, arguments);
    grow(this);
    return result;
  };
  const executed = nodeType.prototype.onExecuted;
  nodeType.prototype.onExecuted = function (output) {
    executed?.apply(this, arguments);
    this[property]?.showRun(output);
  };
}
