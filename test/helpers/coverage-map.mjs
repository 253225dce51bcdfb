// tap's coverage map: every test file covers the package's sources, never dist/ (the package tests load the build,
// in child processes that tap follows) nor the tests themselves.
const kSources = ['index.ts', 'testing.ts', 'lib/**/*.ts', 'example/**/!(*.test).ts']

export default function coverageMap () {
  return kSources
}
