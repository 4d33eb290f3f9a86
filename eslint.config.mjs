// Lint as the Effect examples do (templates/monorepo/eslint.config.mjs): the
// TypeScript rules, and @effect/eslint-plugin's dprint formatting. On top of them,
// this project's own rules: no `any`, no non-null `!`, and the hexagon's
// dependency rule, folder by folder.
import * as effectEslint from "@effect/eslint-plugin"
import tseslint from "typescript-eslint"

/** Imports a folder may not make: every path under src that is further out than itself. */
const forbid = (...folders) => ({
  "no-restricted-imports": ["error", {
    patterns: folders.map((folder) => ({
      regex: `(^|/)(\\.\\./)+${folder}/`,
      message:
        `The hexagon's dependencies point inwards: this folder may not import from src/${folder} (README, "Layout").`
    }))
  }]
})

export default tseslint.config(
  { ignores: ["**/dist", "**/node_modules", ".node", "bench/results", "**/*.md", "**/*.cjs"] },
  ...tseslint.configs.recommended,
  ...effectEslint.configs.dprint,
  {
    languageOptions: { ecmaVersion: 2022, sourceType: "module" },
    rules: {
      "object-shorthand": "error",
      "no-fallthrough": "off",
      "@typescript-eslint/array-type": ["error", { default: "generic", readonly: "generic" }],
      "@typescript-eslint/consistent-type-imports": ["error", { fixStyle: "inline-type-imports" }],
      "@typescript-eslint/no-explicit-any": "error",
      "@typescript-eslint/no-non-null-assertion": "error",
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "@typescript-eslint/no-namespace": "off",
      "@typescript-eslint/no-empty-object-type": "off",
      "@effect/dprint": ["error", {
        config: {
          indentWidth: 2,
          lineWidth: 120,
          semiColons: "asi",
          quoteStyle: "alwaysDouble",
          trailingCommas: "never",
          operatorPosition: "maintain",
          "arrowFunction.useParentheses": "force"
        }
      }]
    }
  },
  { files: ["src/domain/**/*.ts"], rules: forbid("ports", "app", "adapters", "main") },
  { files: ["src/ports/**/*.ts"], rules: forbid("app", "adapters", "main") },
  { files: ["src/app/**/*.ts"], rules: forbid("adapters", "main") },
  { files: ["src/adapters/**/*.ts"], rules: forbid("main", "client") },
  // The client knows the API's definition only: never the workflow or the wiring.
  { files: ["src/client/**/*.ts"], rules: forbid("app", "main") }
)
