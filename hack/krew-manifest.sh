#!/usr/bin/env bash
# krew-manifest.sh DIST_DIR VERSION BASE_URL renders krew/.krew.yaml into DIST_DIR/svctrace.yaml:
# every addURIAndSha becomes the archive's uri under BASE_URL and its sha256, as
# krew-release-bot does for a release.
set -euo pipefail
dist=$1 version=$2 base=$3
here=$(cd "$(dirname "$0")/.." && pwd)
out="$dist/svctrace.yaml"
: > "$out"
while IFS= read -r line; do
	if [[ $line == \#* ]]; then
		continue
	elif [[ $line == *addURIAndSha* ]]; then
		indent=${line%%\{*}
		file=$(sed -E 's/.*download\/\{\{ \.TagName \}\}\/([^"]*)".*/\1/' <<<"$line")
		file=${file//\{\{ .TagName \}\}/$version}
		sha=$(sha256sum "$dist/$file" | cut -d' ' -f1)
		printf '%suri: %s/%s\n%ssha256: %s\n' "$indent" "$base" "$file" "$indent" "$sha" >> "$out"
	else
		printf '%s\n' "${line//\{\{ .TagName \}\}/$version}" >> "$out"
	fi
done < "$here/krew/.krew.yaml"
echo "$out"
