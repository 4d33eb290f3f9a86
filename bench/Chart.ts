/**
 * A dependency-free SVG bar chart: one panel per stack, uploads/s per concurrency
 * level, each contender of the stack side by side, with the headline ratio
 * (tandem / protocol floor; embedded / PostgreSQL + local disk) under each group.
 */
import type { Side, Stack } from "./Contenders.js"
import * as Contenders from "./Contenders.js"
import type { Ratios, Summary } from "./Matrix.js"

const colors: Record<Side, string> = {
  tandem: "#2563eb",
  "protocol-floor": "#10b981",
  floor: "#9ca3af",
  "effect-floor": "#f59e0b",
  embedded: "#7c3aed",
  "pg-disk": "#0ea5e9"
}
const labels: Record<Side, string> = {
  tandem: "tandem",
  "protocol-floor": "protocol floor",
  floor: "floor (node:http)",
  "effect-floor": "Effect floor (@effect/platform)",
  embedded: "tandem, embedded default",
  "pg-disk": "tandem, PostgreSQL + local disk"
}
const ratioLabel: Record<Stack, string> = {
  full: "tandem/protocol floor",
  memory: "tandem/protocol floor",
  embedded: "embedded/PostgreSQL"
}

const escape = (text: string): string =>
  text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;")

/** A round step giving about `ticks` ticks up to `max`. */
const niceStep = (max: number, ticks: number): number => {
  const raw = max / ticks
  const magnitude = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 2.5, 5, 10].map((m) => m * magnitude).find((candidate) => candidate >= raw)
  return step ?? 10 * magnitude
}

const text = (x: number, y: number, content: string, attributes = "") =>
  `<text x="${x.toFixed(1)}" y="${y.toFixed(1)}" ${attributes}>${escape(content)}</text>`

const panel = (
  stack: Stack,
  summaries: ReadonlyArray<Summary>,
  ratios: ReadonlyArray<Ratios>,
  levels: ReadonlyArray<number>,
  left: number,
  top: number,
  width: number,
  height: number
): string => {
  const mine = summaries.filter((s) => s.stack === stack)
  const max = Math.max(1, ...mine.map((s) => s.uploadsPerSecond))
  const step = niceStep(max, 5)
  const yMax = Math.ceil(max / step) * step
  const plotLeft = left + 56
  const plotTop = top + 30
  const plotWidth = width - 66
  const plotHeight = height - 80
  const y = (value: number) => plotTop + plotHeight - (value / yMax) * plotHeight
  const parts: Array<string> = [
    text(left + width / 2, top + 14, Contenders.stackTitle[stack], "text-anchor=\"middle\" font-weight=\"bold\"")
  ]
  for (let tick = 0; tick <= yMax + step / 2; tick += step) {
    parts.push(
      `<line x1="${plotLeft}" x2="${plotLeft + plotWidth}" y1="${y(tick).toFixed(1)}" y2="${
        y(tick).toFixed(1)
      }" stroke="#e5e7eb"/>`
    )
    parts.push(text(plotLeft - 6, y(tick) + 4, String(Math.round(tick)), "text-anchor=\"end\" font-size=\"11\""))
  }
  parts.push(
    text(
      left + 12,
      plotTop + plotHeight / 2,
      "uploads/s",
      `font-size="11" transform="rotate(-90 ${left + 12} ${plotTop + plotHeight / 2})" text-anchor="middle"`
    )
  )
  const groupWidth = plotWidth / levels.length
  const sides = Contenders.sidesOf[stack]
  const barWidth = Math.min(40, groupWidth / (sides.length + 1))
  levels.forEach((level, index) => {
    const center = plotLeft + groupWidth * (index + 0.5)
    sides.forEach((side, sideIndex) => {
      const summary = mine.find((s) => s.side === side && s.concurrency === level)
      if (summary === undefined) return
      const x = center - (barWidth * sides.length) / 2 + sideIndex * barWidth
      const top = y(summary.uploadsPerSecond)
      parts.push(
        `<rect x="${x.toFixed(1)}" y="${top.toFixed(1)}" width="${(barWidth - 2).toFixed(1)}" height="${
          (plotTop + plotHeight - top).toFixed(1)
        }" fill="${colors[side]}"><title>${
          escape(`${side}, c${level}: ${summary.uploadsPerSecond} uploads/s`)
        }</title></rect>`
      )
      parts.push(
        text(
          x + (barWidth - 2) / 2,
          top - 4,
          String(Math.round(summary.uploadsPerSecond)),
          "text-anchor=\"middle\" font-size=\"10\""
        )
      )
    })
    parts.push(text(center, plotTop + plotHeight + 16, `c${level}`, "text-anchor=\"middle\" font-size=\"12\""))
    const ratio = ratios.find((r) => r.stack === stack && r.concurrency === level)
    if (ratio !== undefined) {
      parts.push(
        text(
          center,
          plotTop + plotHeight + 32,
          `${ratioLabel[stack]} ${ratio.headline.uploadsPerSecond.toFixed(2)}`,
          "text-anchor=\"middle\" font-size=\"11\" fill=\"#374151\""
        )
      )
    }
  })
  parts.push(
    `<line x1="${plotLeft}" x2="${plotLeft + plotWidth}" y1="${plotTop + plotHeight}" y2="${
      plotTop + plotHeight
    }" stroke="#6b7280"/>`
  )
  return parts.join("\n")
}

export const uploadsPerSecond = (
  summaries: ReadonlyArray<Summary>,
  ratios: ReadonlyArray<Ratios>,
  levels: ReadonlyArray<number>,
  stacks: ReadonlyArray<Stack>,
  caption: string
): string => {
  const panelWidth = 420
  const panelHeight = 320
  const width = Math.max(panelWidth * stacks.length + 20, 760)
  const height = panelHeight + 90
  const shown = Contenders.sides.filter((side) => stacks.some((stack) => Contenders.sidesOf[stack].includes(side)))
  const perRow = Math.max(1, Math.floor((width - 20) / 230))
  const legend = shown.map((side, index) => {
    const x = 20 + (index % perRow) * 230
    const y = 12 + Math.floor(index / perRow) * 18
    return `<rect x="${x}" y="${y}" width="14" height="14" fill="${colors[side]}"/>` +
      text(x + 20, y + 12, labels[side], "font-size=\"12\"")
  })
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    ...legend,
    text(
      width - 10,
      50,
      "1 KB uploads, median of the repetitions",
      "text-anchor=\"end\" font-size=\"11\" fill=\"#374151\""
    ),
    ...stacks.map((stack, index) =>
      panel(stack, summaries, ratios, levels, 10 + index * panelWidth, 60, panelWidth, panelHeight)
    ),
    text(10, height - 10, caption, "font-size=\"10\" fill=\"#6b7280\""),
    "</svg>",
    ""
  ].join("\n")
}
